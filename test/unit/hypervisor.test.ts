import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpuinfoSaysHypervisor } from '../../src/storage/hypervisor.ts';
import { resolveReadCacheEvict } from '../../src/control/config.ts';

const x86 = (flags: string): string => `processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme ${flags} sse2\nbugs\t\t: sysret_ss_attrs\n\nprocessor\t: 1\n`;

test('the hypervisor CPU flag is found in /proc/cpuinfo, and nothing else is taken for it', () => {
  assert.equal(cpuinfoSaysHypervisor(x86('clflushopt hypervisor lahf_lm')), true);
  assert.equal(cpuinfoSaysHypervisor(x86('clflushopt lahf_lm')), false, 'bare metal');
  assert.equal(cpuinfoSaysHypervisor(x86('not_hypervisor_like')), false, 'a longer flag name is not the flag');
  assert.equal(cpuinfoSaysHypervisor('processor\t: 0\nmodel name\t: hypervisor-grade\nflags\t\t: fpu\n'), false, 'only the flags line counts');
  assert.equal(cpuinfoSaysHypervisor('processor\t: 0\nFeatures\t: fp asimd evtstrm\n'), false, 'AArch64 has no flags line');
  assert.equal(cpuinfoSaysHypervisor(''), false);
});

test('readCacheEvict: auto follows the machine, on and off do not', () => {
  assert.equal(resolveReadCacheEvict('auto', true), true);
  assert.equal(resolveReadCacheEvict('auto', false), false);
  assert.equal(resolveReadCacheEvict('on', false), true);
  assert.equal(resolveReadCacheEvict('off', true), false);
});
