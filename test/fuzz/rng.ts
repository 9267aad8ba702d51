/**
 * Seeded random numbers for fuzzing: every run is a function of its seed, so
 * a failure report (seed, case number) replays exactly.
 */
export class Rng {
  private s: number;

  constructor(seed: number) {
    this.s = seed | 0;
  }

  /** Uniform in [0, 1) (mulberry32). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  u32(): number {
    return (this.next() * 4294967296) >>> 0;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** Uniform over the boundary values a parser is most likely to get wrong, else random. */
  interestingU32(): number {
    return this.chance(0.5) ? this.pick(INTERESTING_U32) : this.u32();
  }

  fill(buf: Buffer, start = 0, end = buf.length): void {
    for (let i = start; i < end; i++) buf[i] = this.int(256);
  }
}

const INTERESTING_U32 = [0, 1, 2, 7, 8, 23, 24, 25, 28, 127, 128, 255, 256, 511, 512, 513, 4095, 4096, 0x7fff, 0x8000, 0xffff, 0x10000, 0x1fffff, 0x200000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** Splits `stream` into random chunks: mostly small, sometimes single bytes, sometimes all at once. */
export function chunkStream(rng: Rng, stream: Buffer): Buffer[] {
  const out: Buffer[] = [];
  // Tiny chunks only for short streams: they multiply the calls, not the coverage.
  const mode = stream.length > 4096 ? rng.range(2, 3) : rng.int(4);
  let at = 0;
  while (at < stream.length) {
    let n: number;
    if (mode === 0) n = stream.length; // one chunk
    else if (mode === 1) n = rng.range(1, 3); // byte by byte, almost
    else if (mode === 2) n = rng.range(1, 64);
    else n = rng.range(1, 70000);
    out.push(stream.subarray(at, Math.min(stream.length, at + n)));
    at += n;
  }
  return out;
}

/** Generic byte-level mutations applied to a structured stream (in place or by copying). */
export function mutate(rng: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const rounds = rng.range(1, 4);
  for (let r = 0; r < rounds && b.length > 0; r++) {
    switch (rng.int(7)) {
      case 0: {
        const i = rng.int(b.length);
        b[i] ^= 1 << rng.int(8);
        break;
      }
      case 1:
        b[rng.int(b.length)] = rng.int(256);
        break;
      case 2: {
        // Overwrite four aligned-ish bytes with a boundary value (lengths, counts, magics).
        const i = rng.int(Math.max(1, b.length - 3));
        if (i + 4 <= b.length) (rng.chance(0.5) ? b.writeUInt32LE : b.writeUInt32BE).call(b, rng.interestingU32(), i);
        break;
      }
      case 3:
        b = b.subarray(0, rng.int(b.length + 1)); // truncate
        break;
      case 4: {
        const i = rng.int(b.length + 1);
        const extra = Buffer.alloc(rng.range(1, 32));
        rng.fill(extra);
        b = Buffer.concat([b.subarray(0, i), extra, b.subarray(i)]);
        break;
      }
      case 5: {
        const i = rng.int(b.length);
        b = Buffer.concat([b.subarray(0, i), b.subarray(Math.min(b.length, i + rng.range(1, 32)))]);
        break;
      }
      default: {
        // Duplicate a slice: repeated headers, replays.
        const i = rng.int(b.length);
        const j = Math.min(b.length, i + rng.range(1, 64));
        b = Buffer.concat([b.subarray(0, j), b.subarray(i, j), b.subarray(j)]);
      }
    }
  }
  return b;
}
