import os from 'node:os';
import { parseArgs } from 'node:util';
import { readConfigFile, resolveConfig, type RawConfig } from '../control/config.ts';
import { startServer } from '../dataplane/server.ts';
import { UsageError } from './usage-error.ts';

const HELP = `usage: reflex serve [options]

  --config FILE        JSON config (device, ports with tenants and objectives)
  --device PATH        file or block device (default: a sparse file under --data-dir)
  --size SIZE          device size for a new file (default 10G)
  --memory SIZE        RAM-backed device, e.g. 1G
  --null SIZE          null device: reads return zeros, writes are dropped
  --data-dir DIR       where the default device lives (default ./data)
  --port N             data port of the default best-effort tenant (default 1234)
  --host ADDR          address to listen on (default 127.0.0.1)
  --workers N          data-plane threads (default: one per core)
  --sector-size N      protocol sector size in bytes (default 512)
  --engine E           auto | uring | fs (default auto)
  --device-model FILE  calibrated device model (.devmodel or JSON; default: the
                       original's sample model, config/sample.devmodel)
  --nbd-port N         also serve the volumes over NBD (standard port: 10809);
                       export names are tenant names
  --no-qos             switch the QoS scheduler off
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      device: { type: 'string' },
      size: { type: 'string' },
      memory: { type: 'string' },
      null: { type: 'string' },
      'data-dir': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      workers: { type: 'string' },
      'sector-size': { type: 'string' },
      engine: { type: 'string' },
      'no-qos': { type: 'boolean' },
      'device-model': { type: 'string' },
      'nbd-port': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const raw: RawConfig = values.config ? readConfigFile(values.config) : {};
  if (values.device !== undefined) raw.device = values.device;
  if (values.size !== undefined) raw.deviceSize = values.size;
  if (values.memory !== undefined) raw.memory = values.memory;
  if (values.null !== undefined) raw.null = values.null;
  if (values['data-dir'] !== undefined) raw.dataDir = values['data-dir'];
  if (values.host !== undefined) raw.host = values.host;
  if (values.workers !== undefined) raw.workers = intArg('--workers', values.workers);
  if (values['sector-size'] !== undefined) raw.sectorSize = intArg('--sector-size', values['sector-size']);
  if (values.engine !== undefined) raw.engine = values.engine;
  if (values['no-qos']) raw.qos = false;
  if (values['nbd-port'] !== undefined) raw.nbdPort = intArg('--nbd-port', values['nbd-port']);
  if (values['device-model'] !== undefined) raw.deviceModel = values['device-model'];
  if (values.port !== undefined) {
    const port = intArg('--port', values.port);
    if (raw.ports === undefined) raw.ports = [{ port }];
    else throw new UsageError('--port and a config with ports: say the ports in one place');
  }
  const config = resolveConfig(raw, os.availableParallelism());
  const server = await startServer(config);
  if (server.fallbackReason) console.warn(`warning: io_uring engine unavailable (${server.fallbackReason}); using Node's fs engine`);
  const d = config.device;
  const where = d.kind === 'file' ? d.path : `${d.kind} device`;
  console.log(`reflex: serving ${where} (${server.deviceSize} bytes, engine ${server.engineName}) with ${config.workers} worker(s)`);
  if (server.nbdPort !== null) console.log(`  NBD on ${config.host}:${server.nbdPort}, exports: ${server.bindings.map((b) => b.tenant.name).join(', ')}`);
  if (server.tenants) console.log(`  QoS on: device rate ${Math.round(server.tenants.deviceRate()).toLocaleString('en-US')} tokens/s`);
  else console.log('  QoS off');
  for (const b of server.bindings) {
    const obj = b.tenant.class === 'LC' ? ` LC ${b.tenant.iops} IOPS p95<=${b.tenant.p95Us}us read ${b.tenant.readPct}%` : ' BE';
    console.log(`  ${config.host}:${b.port} tenant ${b.tenant.name}${obj} volume [${b.volume.offset}, +${b.volume.size})`);
  }
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      console.log(`reflex: ${sig}, draining`);
      void server.close().then(resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  return 0;
}

function intArg(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new UsageError(`${name}: "${v}" is not an integer`);
  return n;
}
