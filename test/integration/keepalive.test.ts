/**
 * Every data connection the server accepts (v1 port, attach port, NBD port)
 * has TCP keepalive armed, so a client machine that vanishes without closing
 * its connections does not hold them forever. Checked from the kernel's own
 * table (/proc/net/tcp: timer 2 is the keepalive timer, with its expiry in
 * clock ticks), not from our code's say-so.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { resolveConfig } from '../../src/control/config.ts';
import { KEEPALIVE_IDLE_MS } from '../../src/util/socket-options.ts';
import { connect } from '../../src/client/index.ts';

const MiB = 1 << 20;
const USER_HZ = 100;
let server: RunningServer;

before(async () => {
  server = await startServer(resolveConfig({ memory: 16 * MiB, workers: 2, attachPort: 0, nbdPort: 0, ports: [{ port: 0, volumeSize: '8M' }] }, 2));
});
after(async () => {
  await server?.close();
});

/** One end of a loopback connection, as /proc/net/tcp shows it: timer kind and seconds left. */
function timerOf(localPort: number, remotePort: number): { timer: number; seconds: number } | null {
  const hexPort = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    if (f[1].endsWith(`:${hexPort(localPort)}`) && f[2].endsWith(`:${hexPort(remotePort)}`) && f[3] === '01') {
      const [timer, when] = f[5].split(':');
      return { timer: parseInt(timer, 16), seconds: parseInt(when, 16) / USER_HZ };
    }
  }
  return null;
}

async function checkPort(name: string, port: number): Promise<void> {
  const sock = net.connect({ port, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  try {
    // The worker arms keepalive when it takes the connection: give it a moment.
    let seen: { timer: number; seconds: number } | null = null;
    for (let i = 0; i < 50; i++) {
      seen = timerOf(port, sock.localPort!);
      if (seen !== null && seen.timer === 2) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(seen !== null, `${name}: the server side of the connection is not in /proc/net/tcp`);
    assert.equal(seen.timer, 2, `${name}: no keepalive timer on the server side`);
    const idle = KEEPALIVE_IDLE_MS / 1000;
    assert.ok(seen.seconds > idle - 5 && seen.seconds <= idle + 1, `${name}: keepalive fires in ${seen.seconds} s, expected about ${idle} s`);
  } finally {
    sock.destroy();
  }
}

test('the v1 port, the attach port and the NBD port arm TCP keepalive on every connection', async () => {
  await checkPort('v1 port', server.bindings[0].port);
  await checkPort('attach port', server.attachPort!);
  await checkPort('NBD port', server.nbdPort!);
});

test('the client library arms TCP keepalive on its connections too', async () => {
  const c = await connect({ port: server.bindings[0].port, connections: 2 });
  try {
    for (const conn of c.pool.connections) {
      const seen = timerOf(conn.socket.localPort!, server.bindings[0].port);
      assert.equal(seen?.timer, 2, 'no keepalive timer on the client side');
    }
  } finally {
    await c.close();
  }
});
