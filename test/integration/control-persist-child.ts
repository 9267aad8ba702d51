/**
 * Child process of control-persistence.test.ts: makes numbered changes
 * through a ControlPlane backed by the SQLite store and prints "saved N"
 * after each returns, then waits to be SIGKILLed.
 */
import { SqliteStore } from '../../src/control/store.ts';
import { makeControl } from '../unit/control-fixture.ts';

const dir = process.argv[2];
const count = Number(process.argv[3]);
const { control } = makeControl(SqliteStore.inDataDir(dir));
for (let i = 0; i < count; i++) {
  const r = await control.createTenant({ name: `t${i}`, class: i % 2 === 0 ? 'LC' : 'BE', ...(i % 2 === 0 ? { iops: 1000 + i, p95Us: 500 } : {}), volumeSize: 1 << 20, credential: i % 3 === 0 });
  if (!r.ok) throw new Error(r.reason);
  process.stdout.write(`saved ${i}\n`);
}
process.stdout.write('done\n');
setInterval(() => {}, 1000);
