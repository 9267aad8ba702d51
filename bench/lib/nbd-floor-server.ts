/**
 * A reference point for bench/nbd.ts, not a server to use: the least work a
 * Node.js event-loop NBD server can do per request. Fixed newstyle handshake
 * (NBD_OPT_GO only, every other option refused), then each READ is answered
 * straight from a Buffer: no scheduler, no engine, no bounds checks, no
 * counters, no TLS. What it costs per request is what Node, libuv and the
 * kernel's loopback TCP cost; the gap between it and reflex is what reflex's
 * own layers cost, and the gap between it and nbdkit is what the runtime costs.
 *
 *   node bench/lib/nbd-floor-server.ts PORT SIZE_BYTES   (prints "ready PORT")
 */
import net from 'node:net';

const port = Number(process.argv[2] ?? 0);
const size = Number(process.argv[3] ?? 2 ** 30);
const memory = Buffer.alloc(size);

// Wire constants from the NBD protocol specification.
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const REPLY_MAGIC = 0x67446698;
const OPT_ABORT = 2;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_ERR_UNSUP = 0x80000001;
const CMD_READ = 0;
const CMD_DISC = 2;
const EINVAL = 22;

function optionReply(sock: net.Socket, option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(OPT_REPLY_MAGIC, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(data.length, 16);
  sock.write(Buffer.concat([h, data]));
}

const server = net.createServer({ noDelay: true }, (sock) => {
  const greeting = Buffer.alloc(18);
  greeting.write('NBDMAGICIHAVEOPT', 0, 'latin1');
  greeting.writeUInt16BE(1 | 2, 16); // FIXED_NEWSTYLE | NO_ZEROES
  sock.write(greeting);
  let buf: Buffer = Buffer.alloc(0);
  let phase: 'flags' | 'options' | 'transmission' = 'flags';
  sock.on('data', (chunk: Buffer) => {
    buf = buf.length > 0 ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      if (phase === 'flags') {
        if (buf.length < 4) return;
        buf = buf.subarray(4);
        phase = 'options';
      } else if (phase === 'options') {
        if (buf.length < 16 || buf.length < 16 + buf.readUInt32BE(12)) return;
        const option = buf.readUInt32BE(8);
        buf = buf.subarray(16 + buf.readUInt32BE(12));
        if (option === OPT_ABORT) return void sock.end();
        if (option !== OPT_GO) {
          optionReply(sock, option, REP_ERR_UNSUP);
          continue;
        }
        const info = Buffer.alloc(12); // NBD_INFO_EXPORT: size, flags HAS_FLAGS | SEND_FLUSH
        info.writeBigUInt64BE(BigInt(size), 2);
        info.writeUInt16BE(1 | 4, 10);
        optionReply(sock, option, REP_INFO, info);
        optionReply(sock, option, REP_ACK);
        phase = 'transmission';
      } else {
        if (buf.length < 28) return;
        const type = buf.readUInt16BE(6);
        const offset = Number(buf.readBigUInt64BE(16));
        const length = buf.readUInt32BE(24);
        if (type === CMD_DISC) return void sock.end();
        // Only reads are served; anything else (a write's payload would
        // follow) ends the connection, since this server is for read benchmarks.
        const reply = Buffer.allocUnsafe(16);
        reply.writeUInt32BE(REPLY_MAGIC, 0);
        buf.copy(reply, 8, 8, 16);
        if (type !== CMD_READ || offset + length > size) {
          reply.writeUInt32BE(EINVAL, 4);
          sock.end(reply);
          return;
        }
        reply.writeUInt32BE(0, 4);
        sock.write(Buffer.concat([reply, memory.subarray(offset, offset + length)]));
        buf = buf.subarray(28);
      }
    }
  });
  sock.on('error', () => sock.destroy());
});
server.listen(port, '127.0.0.1', () => console.log(`ready ${(server.address() as net.AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
