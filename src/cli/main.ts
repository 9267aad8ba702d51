#!/usr/bin/env node
/**
 * `reflex` command line: one entry, one module per subcommand, loaded lazily
 * so `reflex serve` does not pay for the load generator and vice versa.
 */
const COMMANDS: Record<string, { about: string; load: () => Promise<{ run(argv: string[]): Promise<number> }> }> = {
  serve: { about: 'run the flash server', load: () => import('./serve.ts') },
  bench: { about: 'load generator: measure a server (or a local device with --local)', load: () => import('./bench.ts') },
  calibrate: { about: 'measure a device and write its QoS device model', load: () => import('./calibrate.ts') },
  tenant: { about: 'create, list, update and remove tenants (admin API)', load: () => import('./tenant.ts') },
  volume: { about: 'create, list and remove volumes (admin API)', load: () => import('./volume.ts') },
};

function usage(): string {
  const lines = ['usage: reflex <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(12)} ${c.about}`);
  lines.push('', 'reflex <command> --help for its options');
  return lines.join('\n');
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
  console.log(usage());
  process.exit(cmd === undefined ? 1 : 0);
}
const entry = COMMANDS[cmd];
if (entry === undefined) {
  console.error(`reflex: unknown command "${cmd}"\n\n${usage()}`);
  process.exit(2);
}
try {
  const mod = await entry.load();
  process.exitCode = await mod.run(rest);
} catch (err) {
  const e = err as Error;
  // A user sees the reason; REFLEX_DEBUG=1 adds the stack for a bug report.
  const code = (e as { code?: string }).code;
  const hint = code === 'EADDRINUSE' ? ' (another server on that port? pick another with --port / --admin-port, or --no-admin)' : '';
  console.error(`reflex ${cmd}: ${process.env.REFLEX_DEBUG === '1' ? (e.stack ?? e.message) : e.message}${hint}`);
  process.exitCode = 2;
}
