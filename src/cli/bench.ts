/**
 * `reflex bench`: drives a ReFlex server and prints the latency table.
 */
import { parseArgs } from 'node:util';
import { parseSize } from '../control/config.ts';
import { runBench, type BenchOptions } from '../loadgen/runner.ts';
import { formatTable } from '../loadgen/report.ts';
import { UsageError } from './usage-error.ts';

const HELP = `usage: reflex bench [options]

  --local PATH         no server: drive the storage engine on PATH directly
                       (io_uring with O_DIRECT where it loads; says so when not)
  --local-size SIZE    with --local: size of a new file (sparse)
  --engine E           with --local: auto (default), uring or fs
  --queue-depth N      with --local: io_uring slots, as serve --queue-depth (default 128)
  --host ADDR          server address (default 127.0.0.1)
  --port N             server port (default 1234)
  --conns M            connections (default 1)
  --qd N               closed loop: requests outstanding per connection (default 1);
                       open loop: the most outstanding per connection (default 64)
  --iops N             open loop at N requests/s (Poisson arrivals)
  --sweep A,B,C        open loop at each rate in turn
  --read-pct P         percentage of reads (default 100)
  --size SIZE          bytes per request (default 4096)
  --random | --seq     offsets (default random)
  --span SIZE          bytes of the volume to touch (default: the volume size from HELLO)
  --duration S         measured seconds per rate (default 10)
  --warmup S           seconds before measuring (default 2)
  --threads N          load-generator threads sharing the connections (default 1)
  --server-pid PID     read the server's CPU time around the window (Linux /proc)
  --late-us US         open loop: a send later than this counts as missed (default 100)
  --timeout-ms MS      per-request timeout (default 10000)
  --no-hello           do not send HELLO (v1 servers); then --span is required
  --sector-size N      sector size when HELLO is off (default 512)
  --json               print the result as JSON on stdout (progress stays on stderr)
  --quiet              no progress lines
`;

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        conns: { type: 'string' },
        qd: { type: 'string' },
        iops: { type: 'string' },
        sweep: { type: 'string' },
        'read-pct': { type: 'string' },
        size: { type: 'string' },
        random: { type: 'boolean' },
        seq: { type: 'boolean' },
        span: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        threads: { type: 'string' },
        'server-pid': { type: 'string' },
        'late-us': { type: 'string' },
        'timeout-ms': { type: 'string' },
        'no-hello': { type: 'boolean' },
        'sector-size': { type: 'string' },
        local: { type: 'string' },
        'local-size': { type: 'string' },
        engine: { type: 'string' },
        'queue-depth': { type: 'string' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.random && values.seq) throw new UsageError('--random and --seq: pick one');
  if (values.iops !== undefined && values.sweep !== undefined) throw new UsageError('--iops and --sweep: pick one');
  const rates = values.sweep !== undefined ? values.sweep.split(',').map((s) => num('--sweep', s, 1)) : values.iops !== undefined ? [num('--iops', values.iops, 1)] : [];
  const size = sizeArg('--size', values.size ?? '4096');
  const noHello = values['no-hello'] === true;
  const span = values.span !== undefined ? sizeArg('--span', values.span) : undefined;
  if (noHello && span === undefined) throw new UsageError('--no-hello needs --span');
  for (const flag of ['engine', 'local-size', 'queue-depth'] as const) {
    if (values.local === undefined && values[flag] !== undefined) throw new UsageError(`--${flag} is for --local runs (a server's engine is set where it is started)`);
  }
  const opts: BenchOptions = {
    target: {
      host: values.host ?? '127.0.0.1',
      port: int('--port', values.port ?? '1234', 1, 65535),
      hello: !noHello,
      sectorSize: int('--sector-size', values['sector-size'] ?? '512', 1),
      timeoutMs: int('--timeout-ms', values['timeout-ms'] ?? '10000', 0),
    },
    local:
      values.local !== undefined
        ? {
            path: values.local,
            size: values['local-size'] !== undefined ? sizeArg('--local-size', values['local-size']) : undefined,
            engine: engineArg(values.engine),
            queueDepth: values['queue-depth'] !== undefined ? int('--queue-depth', values['queue-depth'], 1, 4096) : undefined,
          }
        : undefined,
    connections: int('--conns', values.conns ?? '1', 1),
    threads: int('--threads', values.threads ?? '1', 1),
    span,
    qd: int('--qd', values.qd ?? (rates.length > 0 ? '64' : '1'), 1),
    rates,
    readPct: num('--read-pct', values['read-pct'] ?? '100', 0, 100),
    size,
    random: values.seq !== true,
    warmupSec: num('--warmup', values.warmup ?? '2', 0),
    durationSec: num('--duration', values.duration ?? '10', 0.001),
    lateUs: num('--late-us', values['late-us'] ?? '100', 0),
    serverPid: values['server-pid'] !== undefined ? int('--server-pid', values['server-pid'], 1) : undefined,
  };
  if (opts.connections < opts.threads) throw new UsageError(`--conns ${opts.connections} must be at least --threads ${opts.threads}`);

  const quiet = values.quiet === true;
  const outcome = await runBench(opts, (phase, p) => {
    if (quiet) return;
    const what = rates.length > 0 ? `rate ${rates[phase]}` : 'closed loop';
    if (p.warmingUp) process.stderr.write(`[${p.elapsedSec.toFixed(0)}s] ${what}: warming up\n`);
    else process.stderr.write(`[${p.elapsedSec.toFixed(0)}s] ${what}: ${Math.round(p.iops)} IOPS, p99 ${p.p99Us.toFixed(1)} us\n`);
  }, (line) => console.warn(line));
  if (values.json) {
    const { target, ...rest } = opts;
    console.log(JSON.stringify({ config: { ...rest, host: target.host, port: target.port, span: outcome.span, sectorSize: outcome.sectorSize, ...(outcome.local ? { localEngine: outcome.local } : {}) }, results: outcome.rows }, null, 2));
  } else {
    console.log(formatTable(outcome.rows));
  }
  return outcome.rows.some((r) => r.completed === 0) ? 1 : 0;
}

function engineArg(v: string | undefined): 'auto' | 'uring' | 'fs' {
  if (v === undefined) return 'auto';
  if (v !== 'auto' && v !== 'uring' && v !== 'fs') throw new UsageError(`--engine: "${v}" must be auto, uring or fs`);
  return v;
}

function num(name: string, text: string, min = -Infinity, max = Infinity): number {
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v) || v < min || v > max) throw new UsageError(`${name}: "${text}" must be a number in [${min}, ${max}]`);
  return v;
}

function int(name: string, text: string, min = -Infinity, max = Infinity): number {
  const v = num(name, text, min, max);
  if (!Number.isInteger(v)) throw new UsageError(`${name}: "${text}" must be an integer`);
  return v;
}

function sizeArg(name: string, text: string): number {
  try {
    const v = parseSize(text, name);
    if (v <= 0) throw new UsageError(`${name}: must be positive`);
    return v;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
