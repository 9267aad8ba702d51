/**
 * `reflex tenant create|list|update|rm|credential`: tenants through the
 * admin API. An admission refusal is printed with its reason and exits 1.
 */
import { parseArgs } from 'node:util';
import { parseSize } from '../control/config.ts';
import { COMMON_HELP, COMMON_OPTIONS, clientFrom, fmtInt, intFlag, reportFailure, table } from './admin-client.ts';
import { UsageError } from './usage-error.ts';

const HELP = `usage: reflex tenant <create|list|update|rm|credential> [options]

  reflex tenant create NAME [--class LC|BE] [--iops N --p95 US [--read-pct P]]
                       [--volume-size SIZE] [--port N] [--credential] [--device D]
      --class         LC (latency-critical, needs --iops and --p95) or BE (best effort);
                      default LC when --iops/--p95 are given, else BE
      --iops N        objective: IOPS counted in 4 KiB requests
      --p95 US        objective: p95 read latency in µs
      --read-pct P    objective: share of reads, 0..100 (default 100)
      --volume-size   also create a volume of this size named like the tenant (e.g. 1G)
      --port N        also bind this v1 data port to the tenant and volume (0: any free port)
      --credential    also create a credential; its secret is printed once
      --device D      device (default: the first)
  reflex tenant list
  reflex tenant update NAME [--class LC|BE] [--iops N] [--p95 US] [--read-pct P]
  reflex tenant rm NAME           removes the tenant with its volumes, ports and credential
  reflex tenant credential NAME [--rm]   new secret (printed once), or remove it

${COMMON_HELP}
`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  class: { type: 'string' },
  iops: { type: 'string' },
  p95: { type: 'string' },
  'read-pct': { type: 'string' },
  'volume-size': { type: 'string' },
  port: { type: 'string' },
  credential: { type: 'boolean' },
  device: { type: 'string' },
  rm: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function classFlag(v: string | undefined): 'LC' | 'BE' | undefined {
  if (v === undefined) return undefined;
  const c = v.toUpperCase();
  if (c !== 'LC' && c !== 'BE') throw new UsageError(`--class: "${v}" is not LC or BE`);
  return c;
}

function readPct(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 100) throw new UsageError(`--read-pct: "${v}" is not a percentage 0..100`);
  return n;
}

/** The objective fields the flags give (for create and update). */
function objective(values: Values): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const cls = classFlag(values.class);
  if (cls !== undefined) o.class = cls;
  const iops = intFlag('--iops', values.iops);
  if (iops !== undefined) o.iops = iops;
  const p95 = intFlag('--p95', values.p95);
  if (p95 !== undefined) o.p95Us = p95;
  const rp = readPct(values['read-pct']);
  if (rp !== undefined) o.readPct = rp;
  return o;
}

function only(values: Values, allowed: string[], sub: string): void {
  const common = Object.keys(COMMON_OPTIONS);
  for (const [k, v] of Object.entries(values)) {
    if (v !== undefined && !common.includes(k) && !allowed.includes(k)) throw new UsageError(`tenant ${sub}: --${k} does not apply`);
  }
}

function oneName(positionals: string[], sub: string): string {
  if (positionals.length !== 1) throw new UsageError(`tenant ${sub} needs exactly one tenant NAME (see reflex tenant --help)`);
  return positionals[0];
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [sub, ...rest] = positionals;
  if (values.help || sub === undefined) {
    console.log(HELP);
    return values.help ? 0 : 2;
  }
  switch (sub) {
    case 'create': {
      only(values, ['class', 'iops', 'p95', 'read-pct', 'volume-size', 'port', 'credential', 'device'], sub);
      const name = oneName(rest, sub);
      const body: Record<string, unknown> = { name, ...objective(values) };
      if (body.class === undefined) body.class = body.iops !== undefined || body.p95Us !== undefined ? 'LC' : 'BE';
      if (values['volume-size'] !== undefined) body.volumeSize = parseSize(values['volume-size'], '--volume-size');
      const port = intFlag('--port', values.port);
      if (port !== undefined) body.port = port;
      if (values.credential) body.credential = true;
      if (values.device !== undefined) body.device = values.device;
      const a = await clientFrom(values).request('POST', '/api/tenants', body);
      if (a.status !== 201) return reportFailure(`tenant ${name}`, a);
      if (values.json) {
        console.log(JSON.stringify(a.body, null, 2));
        return 0;
      }
      const r = a.body;
      console.log(`tenant ${r.tenant.name} admitted: id ${r.tenant.id}, ${r.tenant.class}, ${fmtInt(r.rate)} tokens/s (device ${fmtInt(r.deviceRate)} tokens/s)`);
      if (r.volume) console.log(`  volume ${r.volume.name}: offset ${r.volume.offset}, ${r.volume.size} bytes on ${r.volume.device}`);
      if (r.port !== undefined) console.log(`  v1 data port ${r.port}`);
      if (r.secret) console.log(`  credential secret (shown only now): ${r.secret}`);
      return 0;
    }
    case 'list': {
      only(values, [], sub);
      if (rest.length > 0) throw new UsageError('tenant list takes no NAME');
      const a = await clientFrom(values).request('GET', '/api/tenants');
      if (a.status !== 200) return reportFailure('tenant list', a);
      if (values.json) {
        console.log(JSON.stringify(a.body, null, 2));
        return 0;
      }
      const rows = (a.body as any[]).map((t) => [
        t.name, String(t.id), t.class, t.iops !== undefined ? fmtInt(t.iops) : '-', t.p95Us !== undefined ? fmtInt(t.p95Us) : '-',
        t.readPct !== undefined ? String(t.readPct) : '-', fmtInt(t.rateTokensPerSec), t.device, t.volumes.join(',') || '-',
        t.ports.join(',') || '-', t.hasCredential ? 'yes' : 'no',
      ]);
      console.log(table(['NAME', 'ID', 'CLASS', 'IOPS', 'P95_US', 'READ%', 'TOKENS/S', 'DEVICE', 'VOLUMES', 'PORTS', 'CREDENTIAL'], rows));
      return 0;
    }
    case 'update': {
      only(values, ['class', 'iops', 'p95', 'read-pct'], sub);
      const name = oneName(rest, sub);
      const body = objective(values);
      if (Object.keys(body).length === 0) throw new UsageError('tenant update: give at least one of --class, --iops, --p95, --read-pct');
      const a = await clientFrom(values).request('PATCH', `/api/tenants/${encodeURIComponent(name)}`, body);
      if (a.status !== 200) return reportFailure(`tenant ${name}`, a);
      if (values.json) console.log(JSON.stringify(a.body, null, 2));
      else console.log(`tenant ${name} updated: ${a.body.tenant.class}, ${fmtInt(a.body.tenant.rateTokensPerSec)} tokens/s`);
      return 0;
    }
    case 'rm': {
      only(values, [], sub);
      const name = oneName(rest, sub);
      const a = await clientFrom(values).request('DELETE', `/api/tenants/${encodeURIComponent(name)}`);
      if (a.status !== 200) return reportFailure(`tenant ${name}`, a);
      if (values.json) console.log(JSON.stringify(a.body, null, 2));
      else console.log(`tenant ${name} removed`);
      return 0;
    }
    case 'credential': {
      only(values, ['rm'], sub);
      const name = oneName(rest, sub);
      const a = await clientFrom(values).request(values.rm ? 'DELETE' : 'POST', `/api/tenants/${encodeURIComponent(name)}/credential`);
      if (a.status !== (values.rm ? 200 : 201)) return reportFailure(`credential of ${name}`, a);
      if (values.json) console.log(JSON.stringify(a.body, null, 2));
      else if (values.rm) console.log(`credential of ${name} removed`);
      else console.log(`credential secret of ${name} (shown only now): ${a.body.secret}`);
      return 0;
    }
    default:
      throw new UsageError(`tenant: unknown subcommand "${sub}" (create, list, update, rm, credential)`);
  }
}
