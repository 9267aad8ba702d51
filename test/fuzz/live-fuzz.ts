/**
 * Live-socket fuzzing: many connections send mutated ReFlex and NBD streams
 * to a running server while a well-behaved client writes, reads back and
 * verifies its own volume (another tenant) the whole time.
 *
 * Each attacker connection sends one mutated stream, then either half-closes
 * (the server must answer what it can and close) or drops the connection
 * abruptly. Invariants checked by the caller on the returned stats:
 *   - every half-closed attacker saw the server close within `closeTimeoutMs`
 *     (an error reply, a normal reply or a close: never a hang);
 *   - every response the server sent parses as a ReFlex response frame;
 *   - the good client saw no error and no wrong byte;
 *   - the server is still serving at the end (the good client's last op);
 *   - memory, sampled through `rss()`, stays bounded.
 */
import net from 'node:net';
import { connect } from '../../src/client/index.ts';
import { FrameParser, responsePayload } from '../../src/protocol/reflex-codec.ts';
import { chunkStream, Rng } from './rng.ts';
import { genReflexStream } from './reflex-fuzz.ts';
import { genHandshakeStream, genRequestStream } from './nbd-fuzz.ts';

export interface LiveFuzzOptions {
  host?: string;
  /** Port of the tenant the attackers hit. */
  fuzzPort: number;
  /** Port of the good client's tenant (must be another volume). */
  goodPort: number;
  nbdPort: number | null;
  durationMs: number;
  /** Attacker connections open at once. */
  concurrency: number;
  seed: number;
  /** Server's maximum request payload. */
  maxPayload?: number;
  closeTimeoutMs?: number;
  /** Resident memory of the process that runs the server, bytes. */
  rss: () => number;
}

export interface LiveFuzzStats {
  connections: number;
  bytesSent: number;
  repliesReceived: number;
  closedByServer: number;
  dropped: number;
  /** Half-closed attackers the server did not close in time. */
  hung: number;
  /** Server responses that did not parse as ReFlex frames. */
  malformedReplies: number;
  goodOps: number;
  goodErrors: string[];
  goodMismatches: number;
  rssStart: number;
  rssPeak: number;
  rssEnd: number;
}

const BLOCK = 4096;
const GOOD_BLOCKS = 64;

/** One attacker connection; resolves when it is over. */
function attack(o: LiveFuzzOptions, rng: Rng, stats: LiveFuzzStats): Promise<void> {
  const nbd = o.nbdPort !== null && rng.chance(0.25);
  let stream: Buffer;
  if (nbd) {
    stream = genHandshakeStream(rng);
    if (rng.chance(0.5)) {
      // A well-formed GO for the default export, then fuzzed transmission.
      const go = Buffer.alloc(16 + 6);
      go.write('IHAVEOPT', 0, 'latin1');
      go.writeUInt32BE(7, 8);
      go.writeUInt32BE(6, 12);
      stream = Buffer.concat([Buffer.from([0, 0, 0, 3]), go, genRequestStream(rng, 1 << 20)]);
    }
  } else {
    stream = genReflexStream(rng, o.maxPayload ?? 1 << 20);
  }
  const drop = rng.chance(0.25);
  return new Promise<void>((resolve) => {
    const s = net.connect({ host: o.host ?? '127.0.0.1', port: nbd ? o.nbdPort! : o.fuzzPort });
    const parser = new FrameParser({ sectorSize: 512, maxPayload: 1 << 21, rule: responsePayload });
    const sink = {
      onFrame: () => {
        stats.repliesReceived++;
      },
      onError: () => {
        stats.malformedReplies++;
      },
    };
    let timer: NodeJS.Timeout | null = null;
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      if (timer !== null) clearTimeout(timer);
      resolve();
    };
    s.on('data', (c: Buffer) => {
      if (!nbd) parser.push(c, sink);
    });
    s.on('error', () => {});
    s.on('close', () => {
      if (!drop) stats.closedByServer++;
      finish();
    });
    s.on('connect', () => {
      stats.connections++;
      stats.bytesSent += stream.length;
      for (const c of chunkStream(rng, stream)) s.write(c);
      if (drop) {
        stats.dropped++;
        setTimeout(() => s.destroy(), rng.int(20));
        return;
      }
      s.end();
      timer = setTimeout(() => {
        stats.hung++;
        s.destroy();
      }, o.closeTimeoutMs ?? 10000);
    });
  });
}

/** Writes versioned patterns to its blocks and reads every one back; records any difference. */
async function goodClient(o: LiveFuzzOptions, stats: LiveFuzzStats, stop: () => boolean, seed: number): Promise<void> {
  const c = await connect({ host: o.host ?? '127.0.0.1', port: o.goodPort, timeoutMs: 10000 });
  const rng = new Rng(seed);
  const buf = Buffer.alloc(BLOCK);
  try {
    for (let v = 1; !stop(); v++) {
      const blk = rng.int(GOOD_BLOCKS);
      buf.fill(v & 0xff);
      buf.writeUInt32LE(v, 0);
      buf.writeUInt32LE(blk, 4);
      try {
        await c.write(blk * BLOCK, buf);
        const back = await c.read(blk * BLOCK, BLOCK);
        if (!back.equals(buf)) stats.goodMismatches++;
        stats.goodOps += 2;
      } catch (err) {
        stats.goodErrors.push((err as Error).message);
        if (stats.goodErrors.length > 20) return;
      }
    }
  } finally {
    await c.close();
  }
}

export async function runLiveFuzz(o: LiveFuzzOptions): Promise<LiveFuzzStats> {
  const stats: LiveFuzzStats = {
    connections: 0,
    bytesSent: 0,
    repliesReceived: 0,
    closedByServer: 0,
    dropped: 0,
    hung: 0,
    malformedReplies: 0,
    goodOps: 0,
    goodErrors: [],
    goodMismatches: 0,
    rssStart: o.rss(),
    rssPeak: 0,
    rssEnd: 0,
  };
  stats.rssPeak = stats.rssStart;
  const rng = new Rng(o.seed);
  const end = Date.now() + o.durationMs;
  const stop = (): boolean => Date.now() >= end;
  const sampler = setInterval(() => {
    stats.rssPeak = Math.max(stats.rssPeak, o.rss());
  }, 100);
  const good = goodClient(o, stats, stop, o.seed ^ 0x5a5a);
  const lanes = Array.from({ length: o.concurrency }, async () => {
    while (!stop()) await attack(o, rng, stats);
  });
  await Promise.all(lanes);
  await good;
  clearInterval(sampler);
  stats.rssEnd = o.rss();
  stats.rssPeak = Math.max(stats.rssPeak, stats.rssEnd);
  return stats;
}
