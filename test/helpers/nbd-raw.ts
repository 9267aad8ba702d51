// A raw NBD client for tests: exact-length reads over a plain socket, the
// fixed-newstyle greeting, STARTTLS with a pre-shared key, NBD_OPT_GO and
// simple replies. Enough to drive the server byte by byte where the real
// tools cannot misbehave on purpose.
import net from 'node:net';
import tls from 'node:tls';
import assert from 'node:assert/strict';
import { ClientFlag, Magic, Opt, Rep } from '../../src/nbd/constants.ts';
import { encodeClientFlags, encodeInfoOption, encodeOption } from '../../src/nbd/client-codec.ts';

/** A raw socket with "give me exactly n bytes" reads and a close notice. */
export class Raw {
  sock: net.Socket;
  private buf = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | null = null;
  private readonly onData = (c: Buffer): void => {
    this.buf = Buffer.concat([this.buf, c]);
    this.poke();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.poke();
  };

  private constructor(sock: net.Socket) {
    this.sock = sock;
    this.listen(sock);
  }

  private listen(sock: net.Socket): void {
    sock.on('data', this.onData);
    sock.on('end', this.onEnd);
    sock.on('close', this.onEnd);
    sock.on('error', this.onEnd);
  }

  /**
   * NBD_OPT_STARTTLS, then TLS 1.3 with a pre-shared key (a tenant's name
   * and credential); resolves once the TLS handshake is done.
   */
  async startTlsPsk(identity: string, keyHex: string): Promise<void> {
    this.send(encodeOption(Opt.STARTTLS));
    const rep = await readOptionReply(this);
    assert.equal(rep.type, Rep.ACK, `STARTTLS refused with reply type 0x${rep.type.toString(16)}`);
    const plain = this.sock;
    plain.off('data', this.onData);
    plain.off('end', this.onEnd);
    plain.off('close', this.onEnd);
    await new Promise<void>((resolve, reject) => {
      const secure = tls.connect({
        socket: plain,
        minVersion: 'TLSv1.3',
        pskCallback: () => ({ psk: Buffer.from(keyHex, 'hex'), identity }),
        // No certificate with PSK: there is no server identity to check.
        checkServerIdentity: () => undefined,
      });
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
      this.sock = secure;
      this.listen(secure);
    });
  }

  static connect(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  send(b: Buffer): void {
    this.sock.write(b);
  }

  async read(n: number, ms = 10_000): Promise<Buffer> {
    const deadline = Date.now() + ms;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`connection closed with ${this.buf.length}/${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out reading ${n} bytes`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves once the server has closed, after reading whatever it sent. */
  async closed(ms = 10_000): Promise<Buffer> {
    const deadline = Date.now() + ms;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error('server did not close the connection');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.buf;
  }

  destroy(): void {
    this.sock.destroy();
  }
}

export interface OptReply {
  option: number;
  type: number;
  data: Buffer;
}

export async function readOptionReply(r: Raw): Promise<OptReply> {
  const h = await r.read(20);
  assert.equal(h.readBigUInt64BE(0), Magic.OPTION_REPLY);
  const len = h.readUInt32BE(16);
  return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await r.read(len) };
}

/** Greeting, client flags, then the given options. */
export async function greet(port: number): Promise<Raw> {
  const r = await Raw.connect(port);
  const g = await r.read(18);
  assert.equal(g.readBigUInt64BE(0), Magic.NBDMAGIC);
  r.send(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES));
  return r;
}

/** NBD_OPT_GO on `name`; returns when the ACK arrived. */
export async function go(r: Raw, name: string): Promise<void> {
  r.send(encodeInfoOption(Opt.GO, name, []));
  for (;;) {
    const rep = await readOptionReply(r);
    assert.equal(rep.option, Opt.GO);
    if (rep.type === Rep.ACK) return;
    assert.equal(rep.type, Rep.INFO, `GO failed with reply type 0x${rep.type.toString(16)}`);
  }
}


/** Reads one simple reply (and `dataLen` bytes when it succeeded). */
export async function simple(r: Raw, dataLen = 0): Promise<{ error: number; cookie: number; data: Buffer }> {
  const h = await r.read(16);
  assert.equal(h.readUInt32BE(0), Magic.SIMPLE_REPLY);
  const error = h.readUInt32BE(4);
  const data = error === 0 && dataLen > 0 ? await r.read(dataLen) : Buffer.alloc(0);
  return { error, cookie: h.readUInt32BE(12), data };
}

