/**
 * Local io_uring engine speed: 4 KiB random O_DIRECT reads on a 1 GiB file
 * at queue depth 1, 32 and 128, 5 s each; prints IOPS and p50/p99 latency
 * and writes results/uring-local.json. Compare with fio on the same file:
 *
 *   fio --name=r --filename=FILE --ioengine=io_uring --direct=1 --rw=randread \
 *       --bs=4k --iodepth=QD --runtime=5 --time_based --size=1g
 *
 * Run: node bench/uring-local.ts [file] [seconds] [depths, e.g. 1,32,128]
 * (default file: data/uring-bench.img, laid out with real data on first use
 * because reads of holes or unwritten extents never reach the device).
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Op, newRequest } from '../src/storage/engine.ts';
import type { IoRequest } from '../src/storage/engine.ts';
import { UringEngine } from '../src/storage/uring-engine.ts';

const FILE = process.argv[2] ?? path.join('data', 'uring-bench.img');
const SECONDS = Number(process.argv[3] ?? 5);
const SIZE = 1 << 30;
const BS = 4096;
const DEPTHS = (process.argv[4] ?? '1,32,128').split(',').map(Number);
/** Latency histogram: 100 ns bins up to 100 ms. */
const BIN_NS = 100;
const BINS = 1_000_000;

function layOut(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (fs.existsSync(file) && fs.statSync(file).size >= SIZE && fs.statSync(file).blocks * 512 >= SIZE) return;
  process.stdout.write(`writing ${file} (1 GiB)... `);
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(8 << 20);
  for (let off = 0; off < SIZE; off += chunk.length) {
    for (let i = 0; i < chunk.length; i += 4096) chunk.writeUInt32LE(off + i, i);
    fs.writeSync(fd, chunk, 0, chunk.length, off);
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  console.log('done');
}

function percentile(hist: Uint32Array, total: number, p: number): number {
  const want = Math.ceil(total * p);
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i];
    if (seen >= want) return ((i + 0.5) * BIN_NS) / 1000;
  }
  return Infinity;
}

interface Row { qd: number; iops: number; p50us: number; p99us: number }

function run(qd: number): Promise<Row> {
  const e = UringEngine.open(FILE, { queueDepth: qd });
  const blocks = Math.floor(e.size / BS);
  const hist = new Uint32Array(BINS);
  const started = new Float64Array(qd);
  const reqs: IoRequest[] = [];
  let done = 0;
  let stopping = false;
  let end = 0;
  let t0 = 0;
  return new Promise((resolve, reject) => {
    const issue = (r: IoRequest): void => {
      r.offset = Math.floor(Math.random() * blocks) * BS;
      started[r.ctx as number] = performance.now();
      e.submit(r);
    };
    e.onComplete = (r) => {
      const now = performance.now();
      if (r.result !== 0) {
        stopping = true;
        reject(new Error(`read failed: ${r.result}`));
        return;
      }
      const bin = Math.min(BINS - 1, Math.floor(((now - started[r.ctx as number]) * 1e6) / BIN_NS));
      hist[bin]++;
      done++;
      if (now >= end) stopping = true;
      if (!stopping) {
        issue(r);
        e.kick();
      } else if (e.inFlight === 0) {
        const secs = (now - t0) / 1000;
        void e.close().then(() => resolve({ qd, iops: Math.round(done / secs), p50us: percentile(hist, done, 0.5), p99us: percentile(hist, done, 0.99) }));
      }
    };
    for (let i = 0; i < qd; i++) {
      const r = newRequest();
      r.op = Op.READ;
      r.length = BS;
      r.buf = e.allocBuffer(BS);
      r.ctx = i;
      reqs.push(r);
    }
    t0 = performance.now();
    end = t0 + SECONDS * 1000;
    for (const r of reqs) issue(r);
    e.kick();
  });
}

layOut(FILE);
const rows: Row[] = [];
for (const qd of DEPTHS) {
  const row = await run(qd);
  rows.push(row);
  console.log(`QD ${String(qd).padStart(3)}  ${String(row.iops).padStart(8)} IOPS  p50 ${row.p50us.toFixed(1)} us  p99 ${row.p99us.toFixed(1)} us`);
}
fs.mkdirSync('results', { recursive: true });
fs.writeFileSync(path.join('results', 'uring-local.json'), JSON.stringify({ file: FILE, seconds: SECONDS, bs: BS, rows }, null, 2));
