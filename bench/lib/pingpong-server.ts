/**
 * The baseline for latency benchmarks: a plain TCP server that answers every
 * 24-byte message with 24 + N bytes (a ReFlex GET reply echoing the handle,
 * so the same load generator can measure it), with no other work. Run as
 * `node bench/lib/pingpong-server.ts PORT REPLY_DATA_BYTES`; prints "ready".
 */
import net from 'node:net';

const port = Number(process.argv[2] ?? 0);
const dataBytes = Number(process.argv[3] ?? 4096);
const template = Buffer.alloc(24 + dataBytes, 0xab);

const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  let carry = Buffer.alloc(0);
  sock.on('data', (chunk: Buffer) => {
    const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
    const n = Math.floor(buf.length / 24);
    if (n > 0) {
      const out = Buffer.allocUnsafe(n * template.length);
      for (let i = 0; i < n; i++) {
        const o = i * template.length;
        template.copy(out, o);
        // magic and opcode: GET reply; handle and lba echoed; count from the request.
        buf.copy(out, o, i * 24, i * 24 + 24);
        out.writeUInt16LE(0, o + 2);
      }
      sock.write(out);
    }
    carry = Buffer.from(buf.subarray(n * 24));
  });
  sock.on('error', () => sock.destroy());
});
server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${(server.address() as net.AddressInfo).port}`);
});
process.on('SIGTERM', () => process.exit(0));
