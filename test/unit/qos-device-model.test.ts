import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DeviceModelError,
  formatDeviceModelJson,
  formatDevModel,
  parseDeviceModelAuto,
  parseDeviceModelJson,
  parseDevModel,
  tokenRateFor,
} from '../../src/qos/device-model.ts';
import { ConfigSyntaxError, parseLibconfig } from '../../src/qos/libconfig.ts';

const SAMPLE = `# comment
read_cost_4KB = 100;
write_cost_4KB = 1000;
max_token_rate = 100000000;
token_limits = ( { p95_latency_limit = 500; max_token_rate = 36000000; max_rdonly_token_rate = 85000000; },
                 { p95_latency_limit = 3000; max_token_rate = 80000000; max_rdonly_token_rate = 100000000; } );
`;

test('parses the ReFlex .devmodel sample', () => {
  const m = parseDevModel(SAMPLE);
  assert.deepEqual(m, {
    readCost4k: 100,
    writeCost4k: 1000,
    maxTokenRate: 100_000_000,
    tokenLimits: [
      { p95LatencyUs: 500, maxTokenRate: 36_000_000, maxReadOnlyTokenRate: 85_000_000 },
      { p95LatencyUs: 3000, maxTokenRate: 80_000_000, maxReadOnlyTokenRate: 100_000_000 },
    ],
  });
});

test('libconfig subset: separators, comments, strings, lists, arrays, hex, floats, booleans', () => {
  const g = parseLibconfig(`
    a : 0x10L, /* block
    comment */ b = -2.5e1 // tail
    s = "x\\"y" "z";
    on = TRUE;
    arr = [1, 2, 3];
    nested = { inner = ( 1, "two", { k = 3; } ); };
    empty = ();
  `);
  assert.deepEqual(JSON.parse(JSON.stringify(g)), {
    a: 16,
    b: -25,
    s: 'x"yz',
    on: true,
    arr: [1, 2, 3],
    nested: { inner: [1, 'two', { k: 3 }] },
    empty: [],
  });
});

test('rows without max_rdonly_token_rate use max_token_rate (as the original), and are sorted', () => {
  const m = parseDevModel(`read_cost_4KB=100; write_cost_4KB=900; max_token_rate=50;
    token_limits = ({ p95_latency_limit = 900; max_token_rate = 40; }, { p95_latency_limit = 100; max_token_rate = 10; });`);
  assert.deepEqual(
    m.tokenLimits.map((r) => [r.p95LatencyUs, r.maxTokenRate, r.maxReadOnlyTokenRate]),
    [
      [100, 10, 10],
      [900, 40, 40],
    ],
  );
});

function syntaxErrorAt(text: string, line: number, pattern: RegExp): void {
  assert.throws(
    () => parseDevModel(text, 'x.devmodel'),
    (e: unknown) => {
      assert.ok(e instanceof ConfigSyntaxError, String(e));
      assert.equal(e.line, line, e.message);
      assert.match(e.message, /^x\.devmodel:\d+:\d+: /);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

test('bad input: syntax errors name the line', () => {
  syntaxErrorAt('read_cost_4KB = 100;\nwrite_cost_4KB 1000;', 2, /expected '=' or ':'/);
  syntaxErrorAt('a = 1;\n\nb = (1, 2;', 3, /expected ',' or '\)'/);
  syntaxErrorAt('a = 1;\nb = "open\n;', 2, /unterminated string/);
  syntaxErrorAt('a = 1;\n/* never closed\n', 2, /unterminated \/\* comment/);
  syntaxErrorAt('a = 1;\na = 2;', 2, /duplicate setting 'a'/);
  syntaxErrorAt('a = 12abc;', 1, /not a number/);
  syntaxErrorAt('a = [ { b = 1; } ];', 1, /scalars only/);
  syntaxErrorAt('a = (1,\n2,\n', 3, /unterminated '\('/);
});

test('bad input: semantic errors name the field', () => {
  assert.throws(() => parseDevModel('read_cost_4KB = 100; write_cost_4KB = 1000; max_token_rate = 5;'), /missing 'token_limits'/);
  assert.throws(
    () => parseDevModel('read_cost_4KB = 100; write_cost_4KB = 1000; max_token_rate = 5; token_limits = ({ max_token_rate = 3; });'),
    /token_limits\[0\]: missing 'p95_latency_limit'/,
  );
  assert.throws(
    () => parseDevModel('read_cost_4KB = -1; write_cost_4KB = 1000; max_token_rate = 5; token_limits = ();'),
    (e: unknown) => e instanceof DeviceModelError && /read cost must be a positive number/.test(e.message),
  );
  assert.throws(() => parseDeviceModelJson('{"readCost4k": 1'), DeviceModelError);
});

test('round trip through both writers', () => {
  const m = parseDevModel(SAMPLE);
  assert.deepEqual(parseDevModel(formatDevModel(m, 'calibrated\nby test')), m);
  assert.deepEqual(parseDeviceModelJson(formatDeviceModelJson(m)), m);
  assert.deepEqual(parseDeviceModelAuto(formatDeviceModelJson(m)), m);
  assert.deepEqual(parseDeviceModelAuto(formatDevModel(m)), m);
  assert.match(formatDevModel(m, 'hello'), /^# hello\n/);
});

test('tokenRateFor: interpolates linearly, clamps above, refuses below, caps at max_token_rate', () => {
  const m = parseDevModel(SAMPLE);
  assert.equal(tokenRateFor(m, 500, false), 36_000_000);
  assert.equal(tokenRateFor(m, 500, true), 85_000_000);
  // Halfway between 500 and 3000 µs.
  assert.equal(tokenRateFor(m, 1750, false), 58_000_000);
  assert.equal(tokenRateFor(m, 1750, true), 92_500_000);
  assert.equal(tokenRateFor(m, 3000, false), 80_000_000);
  assert.equal(tokenRateFor(m, 10_000, false), 80_000_000);
  assert.equal(tokenRateFor(m, 499, false), 0);
  const capped = { ...m, maxTokenRate: 90_000_000 };
  assert.equal(tokenRateFor(capped, 5000, true), 90_000_000);
});
