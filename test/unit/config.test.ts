/**
 * Server configuration: every bad field gets a ConfigError that names it;
 * the CLI turns bad flags and files into one clear line and exit code 2.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ConfigError, parseSize, readConfigFile, resolveConfig, type RawConfig } from '../../src/control/config.ts';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

describe('resolveConfig', () => {
  it('defaults: one device (a sparse file in the data dir), the default port on half of it', () => {
    const c = resolveConfig({ dataDir: '/srv/x' }, 4);
    assert.equal(c.workers, 4);
    assert.equal(c.devices.length, 1);
    assert.deepEqual(c.devices[0].spec, { kind: 'file', path: '/srv/x/reflex.img', size: 10 * 2 ** 30, create: true });
    assert.equal(c.ports[0].port, 1234);
    assert.equal(c.ports[0].tenant.name, 'default');
  });

  it('sizes parse with binary units and refuse anything else', () => {
    assert.equal(parseSize('64M'), 64 * 2 ** 20);
    assert.equal(parseSize('1.5G'), 1.5 * 2 ** 30);
    assert.equal(parseSize(4096), 4096);
    for (const bad of ['', 'ten', '-1', '1Q', '9'.repeat(30)]) assert.throws(() => parseSize(bad, 'memory'), ConfigError, bad);
  });

  const refused: Array<[string, RawConfig, RegExp]> = [
    ['two devices at once', { memory: '1G', null: '1G' }, /at most one of device, memory, null/],
    ['odd sector size', { memory: '1G', sectorSize: 1000 }, /sectorSize/],
    ['huge request size', { memory: '1G', maxRequestBytes: 1 << 30 }, /maxRequestBytes/],
    ['no workers', { memory: '1G', workers: 0 }, /workers/],
    ['unknown engine', { memory: '1G', engine: 'spdk' }, /engine/],
    ['port out of range', { memory: '1G', ports: [{ port: 70000 }] }, /ports\[0\]\.port/],
    ['port bound twice', { memory: '1G', ports: [{ port: 5000 }, { port: 5000 }] }, /bound twice/],
    ['unknown class', { memory: '1G', ports: [{ port: 5000, class: 'gold' }] }, /ports\[0\]\.class/],
    ['LC without IOPS', { memory: '1G', ports: [{ port: 5000, class: 'LC', p95Us: 500 }] }, /ports\[0\]\.iops/],
    ['LC read share above 100', { memory: '1G', ports: [{ port: 5000, class: 'LC', iops: 10, p95Us: 500, readPct: 120 }] }, /readPct/],
    ['unaligned volume', { memory: '1G', ports: [{ port: 5000, volumeOffset: 100 }] }, /multiples of the sector size/],
    ['device named twice', { devices: [{ name: 'a', memory: '1G' }, { name: 'a', memory: '1G' }] }, /appears twice/],
    ['port on an unknown device', { devices: [{ name: 'a', memory: '1G' }], ports: [{ port: 5000, device: 'b' }] }, /no device named b/],
    ['admin port equal to a data port', { memory: '1G', ports: [{ port: 5000 }], adminPort: 5000 }, /used twice/],
    ['TLS key without a certificate', { memory: '1G', tlsKey: 'k.pem' }, /tlsCert/],
    ['garbage fault spec', { memory: '1G', faults: 'read-error=lots' }, /faults/],
    ['negative coalescing', { memory: '1G', coalesceUs: -5 }, /coalesceUs/],
    ['fractional coalescing', { memory: '1G', coalesceUs: 2.5 }, /coalesceUs/],
    ['coalescing over 1 ms', { memory: '1G', coalesceUs: 5000 }, /coalesceUs/],
    ['submit batching without polling', { memory: '1G', submitBatch: true }, /submitBatch: only with poll/],
    ['coalescing with polling', { memory: '1G', poll: true, coalesceUs: 20 }, /coalesceUs: has no effect with poll/],
    ['a queue depth for a memory device', { memory: '1G', queueDepth: 64 }, /queueDepth: only for file or block devices/],
    ['a queue depth on the fs engine', { device: 'x.img', engine: 'fs', queueDepth: 64 }, /queueDepth: only for file or block devices/],
  ];
  for (const [what, raw, message] of refused) {
    it(`refuses: ${what}`, () => assert.throws(() => resolveConfig(raw, 2), (e: Error) => e instanceof ConfigError && message.test(e.message)));
  }
});

describe('config files and the serve command', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-config-'));

  it('a file that is not JSON, or not an object, is a ConfigError naming the file', () => {
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '{"ports": [');
    assert.throws(() => readConfigFile(bad), (e: Error) => e instanceof ConfigError && e.message.includes(bad));
    fs.writeFileSync(bad, '[1, 2]');
    assert.throws(() => readConfigFile(bad), /top level must be an object/);
    assert.throws(() => readConfigFile(path.join(dir, 'missing.json')), /cannot read config/);
  });

  it('reflex serve answers bad flags and files with one line and exit code 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['serve', '--bogus'], /Unknown option '--bogus'/],
      [['serve', '--workers', 'many'], /--workers: "many" is not an integer/],
      [['serve', '--memory', 'lots'], /memory: "lots" is not a size/],
      [['serve', '--config', path.join(dir, 'bad.json')], /config .*bad\.json/],
      [['serve', '--memory', '16M', '--faults', 'delay-us=-5', '--no-admin', '--no-persist'], /faults/],
      [['serve', '--memory', '16M', '--push-url', 'ftp://127.0.0.1/x', '--no-admin', '--no-persist'], /pushUrl: .* must be http/],
      [['serve', '--memory', '16M', '--push-url', 'http://127.0.0.1:8080/', '--push-interval-ms', 'often', '--no-admin', '--no-persist'], /--push-interval-ms: "often" is not an integer/],
      [['serve', '--memory', '16M', '--push-url', 'http://127.0.0.1:8080/', '--push-interval-ms', '5', '--no-admin', '--no-persist'], /pushIntervalMs: 5/],
      [['serve', '--memory', '16M', '--server-id', 'has space', '--no-admin', '--no-persist'], /serverId/],
      [['serve', '--device', path.join(dir, 'q.img'), '--queue-depth', 'deep', '--no-admin', '--no-persist'], /--queue-depth: "deep" is not an integer/],
      [['serve', '--device', path.join(dir, 'q.img'), '--queue-depth', '0', '--no-admin', '--no-persist'], /queueDepth: 0 must be an integer from 1 to 4096/],
      [['serve', '--memory', '16M', '--queue-depth', '64', '--no-admin', '--no-persist'], /queueDepth: only for file or block devices/],
      [['serve', '--memory', '16M', '--submit-batch', '--no-admin', '--no-persist'], /submitBatch: only with poll/],
      [['serve', '--device', path.join(dir, 'q.img'), '--read-cache-evict', 'maybe', '--no-admin', '--no-persist'], /readCacheEvict: "maybe" must be auto, on or off/],
      [['serve', '--memory', '16M', '--read-cache-evict', 'on', '--no-admin', '--no-persist'], /readCacheEvict: on is only for file or block devices/],
      [['serve', '--memory', '16M', '--poll', '--coalesce-us', '20', '--no-admin', '--no-persist'], /coalesceUs: has no effect with poll/],
      [['serve', '--memory', '16M', '--faults', 'unsupported=flush', '--no-admin', '--no-persist'], /unsupported=flush/],
    ];
    for (const [args, message] of cases) {
      const r = await run(process.execPath, [CLI, ...args]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
      assert.equal(r.code, 2, `${args.join(' ')}: exit code`);
      assert.match(r.stderr, message, args.join(' '));
      assert.doesNotMatch(r.stderr, /\n\s+at /, `${args.join(' ')}: no stack trace`);
    }
  });
});
