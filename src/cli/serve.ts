import os from 'node:os';
import { parseArgs } from 'node:util';
import { readConfigFile, resolveConfig, type RawConfig } from '../control/config.ts';
import { startServer } from '../dataplane/server.ts';
import { fallbackWarning } from '../storage/open-engine.ts';
import { UsageError } from './usage-error.ts';

/** The admin API's default port (the CLI's --admin default too). */
const DEFAULT_ADMIN_PORT = 7070;

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
  --attach-port N      data port without a tenant: clients HELLO, then ATTACH
                       with a tenant credential (HMAC challenge-response)
  --admin-port N       admin API, metrics and status page (default 7070)
  --no-admin           no admin API
  --admin-token T      admin bearer token (default: <data-dir>/admin.token, created)
  --tls-cert FILE      PEM certificate: TLS on data and admin ports
  --tls-key FILE       PEM private key for --tls-cert
  --no-persist         keep tenants and volumes in memory only (default: in
                       <data-dir>/registry.db)
  --faults SPEC         inject device faults (testing), e.g.
                       read-error=0.01,write-error=0.01,delay-us=500,full-after=64M,fail=0-4096,seed=1
  --poll               workers spin instead of sleeping when idle (ReFlex-style
                       polling): lower latency at low load, one busy core each
  --coalesce-us N      after a loop turn with 2+ requests, sleep N µs so the next
                       ones arrive together (default 40; 0 off; not with --poll)
  --queue-depth N      requests each worker keeps at a file or block device at
                       once (io_uring slots; default 128, up to 4096); more wait
                       in order. NVMe drives may want 256 or more
  --read-cache-evict M evict each read buffer from the CPU caches before the
                       device fills it: auto (default; on under a hypervisor,
                       whose disk copies from another core), on or off
  --submit-batch       with --poll, batch each turn's device submissions instead
                       of one per request (try it on NVMe; per request suits
                       virtio disks)
  --no-qos             switch the QoS scheduler off
  --push-url URL       POST this server's stats (JSON, as GET /api/stats without
                       the series) to a cluster controller every interval
  --push-interval-ms N how often to push (default 1000)
  --server-id NAME     this server's name in pushed stats (default: host name)
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
      'push-url': { type: 'string' },
      'push-interval-ms': { type: 'string' },
      'server-id': { type: 'string' },
      'device-model': { type: 'string' },
      'nbd-port': { type: 'string' },
      'attach-port': { type: 'string' },
      'admin-port': { type: 'string' },
      'admin-token': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'no-persist': { type: 'boolean' },
      'no-admin': { type: 'boolean' },
      faults: { type: 'string' },
      poll: { type: 'boolean' },
      'submit-batch': { type: 'boolean' },
      'coalesce-us': { type: 'string' },
      'queue-depth': { type: 'string' },
      'read-cache-evict': { type: 'string' },
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
  if (values['attach-port'] !== undefined) raw.attachPort = intArg('--attach-port', values['attach-port']);
  if (values['admin-port'] !== undefined) raw.adminPort = intArg('--admin-port', values['admin-port']);
  else if (raw.adminPort === undefined && !values['no-admin']) raw.adminPort = DEFAULT_ADMIN_PORT;
  if (values['no-admin']) delete raw.adminPort;
  if (values['admin-token'] !== undefined) raw.adminToken = values['admin-token'];
  if (values['tls-cert'] !== undefined) raw.tlsCert = values['tls-cert'];
  if (values['tls-key'] !== undefined) raw.tlsKey = values['tls-key'];
  raw.persist = raw.persist ?? !values['no-persist'];
  if (values.faults !== undefined) raw.faults = values.faults;
  if (values.poll) raw.poll = true;
  if (values['submit-batch']) raw.submitBatch = true;
  if (values['coalesce-us'] !== undefined) raw.coalesceUs = intArg('--coalesce-us', values['coalesce-us']);
  if (values['queue-depth'] !== undefined) raw.queueDepth = intArg('--queue-depth', values['queue-depth']);
  if (values['read-cache-evict'] !== undefined) raw.readCacheEvict = values['read-cache-evict'];
  if (values['nbd-port'] !== undefined) raw.nbdPort = intArg('--nbd-port', values['nbd-port']);
  if (values['device-model'] !== undefined) raw.deviceModel = values['device-model'];
  if (values['push-url'] !== undefined) raw.pushUrl = values['push-url'];
  if (values['push-interval-ms'] !== undefined) raw.pushIntervalMs = intArg('--push-interval-ms', values['push-interval-ms']);
  if (values['server-id'] !== undefined) raw.serverId = values['server-id'];
  if (values.port !== undefined) {
    const port = intArg('--port', values.port);
    if (raw.ports === undefined) raw.ports = [{ port }];
    else throw new UsageError('--port and a config with ports: say the ports in one place');
  }
  const config = resolveConfig(raw, os.availableParallelism());
  const server = await startServer(config);
  if (server.fallbackReason) console.warn(fallbackWarning(server.fallbackReason));
  config.devices.forEach((d, i) => {
    const where = d.spec.kind === 'file' ? d.spec.path : `${d.spec.kind} device`;
    const table = server.control.registry.table(d.name);
    const model = d.deviceModel ?? "the original's sample model (run `reflex calibrate` for yours)";
    const qos = config.qos ? `QoS on, device rate ${Math.round(table.deviceRate()).toLocaleString('en-US')} tokens/s from ${model}` : 'QoS off';
    console.log(`reflex: device ${d.name}: ${where} (${server.control.registry.devices.get(d.name)!.size} bytes, engine ${server.engines[i]}${server.engines[i] === 'uring' && server.evictReadBuffers ? ', read buffers evicted from CPU caches' : ''}), ${qos}`);
  });
  console.log(`reflex: ${config.workers} data-plane worker(s)`);
  for (const p of server.control.registry.ports.values()) {
    const t = server.control.registry.tenants.get(p.tenant)!.spec;
    const v = server.control.registry.volumes.get(p.volume)!;
    const obj = t.class === 'LC' ? ` LC ${t.iops} IOPS p95<=${t.p95Us}us read ${t.readPct}%` : ' BE';
    console.log(`  ${config.host}:${p.port} tenant ${t.name}${obj} volume ${v.name} [${v.offset}, +${v.size})`);
  }
  if (server.attachPort !== null) console.log(`  ${config.host}:${server.attachPort} attach port (HELLO + ATTACH with a tenant credential)`);
  if (server.nbdPort !== null) console.log(`  ${config.host}:${server.nbdPort} NBD, exports: ${[...server.control.registry.volumes.keys()].join(', ')}`);
  if (server.adminPort !== null) {
    console.log(`  admin API and status page: http${config.tls ? 's' : ''}://${config.host}:${server.adminPort}/ (token in ${config.dataDir}/admin.token)`);
  }
  if (config.push !== null) console.log(`  stats pushed to ${config.push.url} every ${config.push.intervalMs} ms as server ${config.serverId}`);
  for (const p of server.restoreProblems) console.warn(`warning: not restored: ${p}`);
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
