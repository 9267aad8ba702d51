/**
 * Several devices behind one server, each with its own engine, device model
 * and token budget; and TLS on the data ports.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer } from '../../src/dataplane/server.ts';
import { connect } from '../../src/client/index.ts';

const MiB = 1 << 20;
let dir: string;

// A small device: 1,000,000 tokens/s (10,000 reads/s).
const SMALL = `read_cost_4KB = 100; write_cost_4KB = 1000; max_token_rate = 1000000;
token_limits = ( { p95_latency_limit = 1000; max_token_rate = 1000000; max_rdonly_token_rate = 1000000; } );`;

before(() => {
  const base = fileURLToPath(new URL('../../data', import.meta.url));
  fs.mkdirSync(base, { recursive: true });
  dir = fs.mkdtempSync(path.join(base, 'reflex-devices-'));
  fs.writeFileSync(path.join(dir, 'small.devmodel'), SMALL);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('several devices', () => {
  it('each device has its own engine, budget and volumes; data lands on the right one', async () => {
    const server = await startServer(
      resolveConfig(
        {
          devices: [
            { name: 'ram', memory: '64M', deviceModel: path.join(dir, 'small.devmodel') },
            { name: 'disk', device: path.join(dir, 'disk.img'), deviceSize: '64M' },
          ],
          workers: 2,
          ports: [
            { port: 0, tenant: 'on-ram', device: 'ram' },
            { port: 0, tenant: 'on-disk', device: 'disk', volumeOffset: 0, volumeSize: '32M' },
          ],
        },
        2,
      ),
    );
    try {
      const devices = server.control.listDevices();
      assert.deepEqual(devices.map((d) => [d.name, d.engine]), [['ram', 'memory'], ['disk', server.engines[1]]]);
      assert.equal(devices[0].deviceRateTokensPerSec, 1_000_000);
      assert.equal(devices[1].deviceRateTokensPerSec, 100_000_000, 'the sample model on the disk');
      // The same objective: refused on the small device, admitted on the other.
      const refused = await server.control.createTenant({ name: 'big-ram', class: 'LC', iops: 20_000, p95Us: 1000, device: 'ram' });
      assert.equal(refused.ok, false);
      assert.match((refused as { reason: string }).reason, /tokens\/s/);
      const admitted = await server.control.createTenant({ name: 'big-disk', class: 'LC', iops: 20_000, p95Us: 1000, device: 'disk', volumeSize: 8 * MiB });
      assert.ok(admitted.ok, admitted.ok ? '' : admitted.reason);
      // A volume must live on its owner's device.
      const wrong = await server.control.createVolume({ name: 'x', owner: 'on-ram', size: MiB, device: 'disk' });
      assert.equal(wrong.ok, false);

      const ram = await connect({ port: server.bindings[0].port });
      const disk = await connect({ port: server.bindings[1].port });
      await ram.write(0, Buffer.alloc(4096, 0x11));
      await disk.write(0, Buffer.alloc(4096, 0x22));
      await disk.flush();
      assert.deepEqual(await ram.read(0, 4096), Buffer.alloc(4096, 0x11));
      assert.deepEqual(await disk.read(0, 4096), Buffer.alloc(4096, 0x22));
      await ram.close();
      await disk.close();
      const onDisk = fs.readFileSync(path.join(dir, 'disk.img')).subarray(0, 4096);
      assert.deepEqual(onDisk, Buffer.alloc(4096, 0x22), 'the disk tenant wrote the disk file');
    } finally {
      await server.close();
    }
  });
});

describe('TLS on data ports', () => {
  it('a TLS client reads and writes; a plaintext client gets nothing', async (t) => {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    } catch {
      if (process.env.REFLEX_ALLOW_SKIP === '1') return t.skip('openssl not available');
      throw new Error('openssl is needed to make a test certificate (REFLEX_ALLOW_SKIP=1 to skip)');
    }
    const server = await startServer(resolveConfig({ memory: '16M', workers: 2, tlsCert: cert, tlsKey: key, ports: [{ port: 0 }] }, 2));
    try {
      const port = server.bindings[0].port;
      const c = await connect({ port, connections: 2, tls: { ca: fs.readFileSync(cert) } });
      const data = Buffer.alloc(8192, 0x5e);
      await c.write(4096, data);
      assert.deepEqual(await c.read(4096, 8192), data);
      await c.close();
      // Plain frames at a TLS port: the handshake fails and the server hangs up.
      const got = await new Promise<Buffer>((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1' }, () => {
          const h = Buffer.alloc(24);
          h.writeUInt16LE(24, 0);
          h.writeUInt32LE(1, 20);
          s.write(h);
        });
        const chunks: Buffer[] = [];
        s.on('data', (d: Buffer) => chunks.push(d));
        s.on('close', () => resolve(Buffer.concat(chunks)));
        s.on('error', () => {});
        setTimeout(() => s.destroy(), 3000);
      });
      assert.ok(got.length < 24 || got.readUInt16LE(0) !== 24 || got.readUInt16LE(2) !== 0, 'no GET reply over plaintext');
    } finally {
      await server.close();
    }
  });
});


