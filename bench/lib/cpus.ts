import fs from 'node:fs';

/**
 * The CPU that takes the disk's completion interrupts. The server (and the
 * local run, and fio) sit there: a completion then wakes its thread on the
 * same core, as ReFlex pins a queue pair per core. Cross-core wake-ups cost
 * tens of µs on this kind of VM, which would bias the comparison. The load
 * generator takes the other CPU.
 */
export function diskIrqCpu(): number {
  try {
    const lines = fs.readFileSync('/proc/interrupts', 'utf8').split('\n');
    const cpus = lines[0].trim().split(/\s+/).length;
    let best = { cpu: 1, count: -1 };
    for (const l of lines.slice(1)) {
      if (!/virtio\d+-req|nvme\d+q\d+/.test(l)) continue;
      const counts = l.trim().split(/\s+/).slice(1, 1 + cpus).map(Number);
      counts.forEach((c, cpu) => {
        if (c > best.count) best = { cpu, count: c };
      });
    }
    return best.cpu;
  } catch {
    return 1;
  }
}
