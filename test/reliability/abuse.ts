/**
 * Load and abuse against a server child process:
 *   - many idle connections held open at once (spread over several loopback
 *     source addresses so ephemeral ports never run out);
 *   - slow clients dribbling a request one byte at a time;
 *   - clients that pipeline reads and never read the responses;
 *   - clients that connect and drop in a loop.
 * Meanwhile a well-behaved client measures its read latency; its p99 under
 * abuse is compared with its p99 alone, and the server's RSS is sampled.
 */
import net from 'node:net';
import { connect } from '../../src/client/index.ts';
import { Cmd } from '../../src/protocol/reflex-constants.ts';
import { header } from '../helpers/raw-peer.ts';

export interface AbuseOptions {
  port: number;
  /** Idle connections to hold. */
  hold: number;
  slow: number;
  nonReaders: number;
  /** Size of each read a non-reader pipelines (default 64 KiB). */
  nonReaderBytes?: number;
  churners: number;
  /** Length of each latency phase (alone, under abuse), ms. */
  phaseMs: number;
  rss: () => number;
  /** Loopback source addresses to spread held connections over. */
  sourceAddresses?: number;
  log?: (line: string) => void;
}

export interface AbuseReport {
  held: number;
  holdFailures: number;
  /** Held connections still open when the abuse phase ended. */
  stillOpen: number;
  slowBytes: number;
  nonReaderRequests: number;
  churned: number;
  aloneP99Us: number;
  abuseP99Us: number;
  aloneOps: number;
  abuseOps: number;
  goodErrors: number;
  rssBefore: number;
  rssPeak: number;
  rssAfter: number;
}

function p99(us: number[]): number {
  if (us.length === 0) return 0;
  const s = [...us].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)];
}

/** Serial 4 KiB reads and writes for `ms`; latency of each, µs. */
async function measure(port: number, ms: number, report: { goodErrors: number }): Promise<number[]> {
  const c = await connect({ port, timeoutMs: 10000 });
  const lat: number[] = [];
  const data = Buffer.alloc(4096, 0x61);
  const end = Date.now() + ms;
  try {
    for (let i = 0; Date.now() < end; i++) {
      const t0 = performance.now();
      try {
        if (i % 2 === 0) await c.write((i % 256) * 4096, data);
        else await c.read((i % 256) * 4096, 4096);
      } catch {
        report.goodErrors++;
      }
      lat.push((performance.now() - t0) * 1000);
    }
  } finally {
    await c.close();
  }
  return lat;
}

function open(port: number, localAddress: string | undefined): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    s.once('connect', () => {
      s.off('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
    s.once('error', reject);
  });
}

export async function runAbuse(o: AbuseOptions): Promise<AbuseReport> {
  const r: AbuseReport = {
    held: 0,
    holdFailures: 0,
    stillOpen: 0,
    slowBytes: 0,
    nonReaderRequests: 0,
    churned: 0,
    aloneP99Us: 0,
    abuseP99Us: 0,
    aloneOps: 0,
    abuseOps: 0,
    goodErrors: 0,
    rssBefore: o.rss(),
    rssPeak: 0,
    rssAfter: 0,
  };
  const alone = await measure(o.port, o.phaseMs, r);
  r.aloneP99Us = p99(alone);
  r.aloneOps = alone.length;

  const sockets: net.Socket[] = [];
  const sampler = setInterval(() => (r.rssPeak = Math.max(r.rssPeak, o.rss())), 200);
  try {
    // Held connections, opened in batches so the accept queue keeps up.
    const sources = o.sourceAddresses ?? 1;
    const BATCH = 500;
    for (let i = 0; i < o.hold; i += BATCH) {
      const n = Math.min(BATCH, o.hold - i);
      const got = await Promise.allSettled(Array.from({ length: n }, (_, j) => open(o.port, sources > 1 ? `127.0.0.${1 + ((i + j) % sources)}` : undefined)));
      for (const g of got) {
        if (g.status === 'fulfilled') {
          sockets.push(g.value);
          r.held++;
        } else r.holdFailures++;
      }
    }
    o.log?.(`holding ${r.held} connections (${r.holdFailures} failed); server RSS ${(o.rss() / 2 ** 20).toFixed(0)} MiB`);
    let stop = false;
    const timers: NodeJS.Timeout[] = [];
    // Slow clients: a valid GET, one byte per second.
    for (let i = 0; i < o.slow; i++) {
      const s = await open(o.port, undefined);
      sockets.push(s);
      const req = header(Cmd.GET, i, i * 8, 8);
      let at = 0;
      timers.push(
        setInterval(() => {
          if (at < req.length) {
            s.write(req.subarray(at, at + 1));
            at++;
            r.slowBytes++;
          }
        }, 1000),
      );
    }
    // Non-readers: pipeline 64 KiB reads and never read a byte back.
    for (let i = 0; i < o.nonReaders; i++) {
      const s = await open(o.port, undefined);
      s.pause();
      sockets.push(s);
      const sectors = (o.nonReaderBytes ?? 65536) / 512;
      const burst = Buffer.concat(Array.from({ length: 256 }, (_, k) => header(Cmd.GET, k, k * sectors, sectors)));
      const pump = (): void => {
        if (stop || s.destroyed) return;
        // Only write while the kernel takes it: the server stops reading, so this stops too.
        if (s.write(burst)) {
          r.nonReaderRequests += 256;
          setImmediate(pump);
        } else s.once('drain', pump);
      };
      pump();
    }
    // Churners: connect, maybe send half a header, drop, again.
    const churn = async (): Promise<void> => {
      while (!stop) {
        try {
          const s = await open(o.port, undefined);
          if (r.churned % 2 === 0) s.write(header(Cmd.SET, 1, 0, 8).subarray(0, 10));
          s.destroy();
          r.churned++;
        } catch {
          await new Promise((res) => setTimeout(res, 10));
        }
      }
    };
    const churners = Array.from({ length: o.churners }, churn);

    const underAbuse = await measure(o.port, o.phaseMs, r);
    r.abuseP99Us = p99(underAbuse);
    r.abuseOps = underAbuse.length;
    stop = true;
    for (const t of timers) clearInterval(t);
    await Promise.all(churners);
    r.stillOpen = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
  } finally {
    for (const s of sockets) s.destroy();
    clearInterval(sampler);
  }
  await new Promise((res) => setTimeout(res, 500));
  r.rssAfter = o.rss();
  r.rssPeak = Math.max(r.rssPeak, r.rssAfter);
  return r;
}
