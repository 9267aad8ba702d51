/**
 * Long reliability run: codec fuzzing, live-socket fuzzing, SIGKILL crash
 * trials, 10,000 held connections with abuse, graceful shutdown. Prints a
 * report and writes results/reliability.json.
 *
 *   node bench/reliability.ts [--quick] [--minutes-fuzz N] [--kills N] [--hold N] [--seed N]
 *
 * Loopback only. The server runs as a child process wherever memory is
 * measured, so RSS is the server's alone (/proc/PID/status VmRSS).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fuzzReflex, newStats } from '../test/fuzz/reflex-fuzz.ts';
import { fuzzNbdHandshake, fuzzNbdRequests } from '../test/fuzz/nbd-fuzz.ts';
import { runLiveFuzz } from '../test/fuzz/live-fuzz.ts';
import { runCrashTrials, runRegistryCrash } from '../test/reliability/crash-trials.ts';
import { runAbuse } from '../test/reliability/abuse.ts';
import { spawnServer, ROOT } from '../test/reliability/server-process.ts';
import { runShutdown } from '../test/reliability/shutdown.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    'minutes-fuzz': { type: 'string' },
    'live-seconds': { type: 'string' },
    kills: { type: 'string' },
    hold: { type: 'string' },
    seed: { type: 'string' },
  },
});
const quick = values.quick === true;
const fuzzMs = Number(values['minutes-fuzz'] ?? (quick ? 0.1 : 1)) * 60_000;
const liveMs = Number(values['live-seconds'] ?? (quick ? 5 : 30)) * 1000;
const kills = Number(values.kills ?? (quick ? 3 : 30));
const hold = Number(values.hold ?? (quick ? 1000 : 10_000));
const seed = Number(values.seed ?? Date.now() % 1e9);
const MiB = 2 ** 20;
const mib = (b: number): string => `${(b / MiB).toFixed(0)} MiB`;

console.log(`reliability run, seed ${seed}${quick ? ' (quick)' : ''}`);

// 1. Codec fuzzing: a third of the time for each parser.
const t0 = Date.now();
const reflex = fuzzReflex(seed, Infinity, newStats(), t0 + fuzzMs / 3);
const nbdReq = fuzzNbdRequests(seed, Infinity, newStats(), Date.now() + fuzzMs / 3);
const nbdHs = fuzzNbdHandshake(seed, Infinity, newStats(), Date.now() + fuzzMs / 3);
const fuzzSeconds = (Date.now() - t0) / 1000;
console.log(`codec fuzzing (${fuzzSeconds.toFixed(0)} s): ReFlex ${reflex.frames.toLocaleString('en-US')} frames + ${reflex.errors.toLocaleString('en-US')} errors in ${reflex.cases.toLocaleString('en-US')} streams; NBD ${nbdReq.frames.toLocaleString('en-US')} requests, ${nbdHs.frames.toLocaleString('en-US')} option replies; crashes 0 (any would have stopped this run)`);

// 2. Live-socket fuzzing against a server process with two tenants and NBD.
const cfgDir = fs.mkdtempSync(path.join(ROOT, 'data', 'reliability-'));
const cfg = path.join(cfgDir, 'config.json');
fs.writeFileSync(cfg, JSON.stringify({ memory: '64M', workers: 2, persist: false, dataDir: cfgDir, ports: [{ port: 0 }, { port: 0 }], nbdPort: 0 }));
const fuzzSrv = await spawnServer(['--config', cfg, '--no-admin'], { tenants: 2, nbd: true });
const live = await runLiveFuzz({ fuzzPort: fuzzSrv.ports[0], goodPort: fuzzSrv.ports[1], nbdPort: fuzzSrv.nbdPort, durationMs: liveMs, concurrency: 16, seed, rss: fuzzSrv.rss });
fuzzSrv.kill('SIGTERM');
const liveExit = await fuzzSrv.exited;
fs.rmSync(cfgDir, { recursive: true, force: true });
console.log(
  `live fuzzing (${liveMs / 1000} s): ${live.connections} attacker connections, ${mib(live.bytesSent)} sent, ${live.hung} hung, ${live.malformedReplies} malformed replies; good client ${live.goodOps} ops, ${live.goodErrors.length} errors, ${live.goodMismatches} wrong reads; server RSS ${mib(live.rssStart)} -> peak ${mib(live.rssPeak)}, end ${mib(live.rssEnd)}; exit ${liveExit}`,
);

// 3. Crash trials.
const crash = await runCrashTrials({ trials: kills, clients: 4, lanesPerClient: 4, blocksPerLane: 32, minRunMs: 200, maxRunMs: 2000, seed, log: quick ? undefined : (l) => console.log(`  ${l}`) });
const registry = await runRegistryCrash();
console.log(`crash safety: ${crash.trials} SIGKILLs, ${crash.acknowledgedWrites} acknowledged writes, ${crash.flushesCompleted} flushes, ${crash.lost} lost, ${crash.readMismatches} wrong reads, ${crash.inflightLanded} in-flight writes landed; registry survives kill: ${registry.tenantRestored && registry.portRestored && registry.dataRestored}`);
for (const d of crash.lossDetails) console.log(`  LOSS ${d}`);

// 4. Load and abuse: held connections, slow / non-reading / churning clients.
const loadSrv = await spawnServer(['--memory', '256M', '--port', '0', '--workers', '2', '--no-persist', '--no-admin'], { fileLimit: Math.min(19_000, hold + 4000) });
const abuse = await runAbuse({ port: loadSrv.ports[0], hold, slow: 50, nonReaders: 4, nonReaderBytes: 4096, churners: 4, phaseMs: quick ? 3000 : 10_000, rss: loadSrv.rss, sourceAddresses: 8, log: (l) => console.log(`  ${l}`) });
loadSrv.kill('SIGTERM');
const loadExit = await loadSrv.exited;
console.log(
  `load: ${abuse.held} connections held (${abuse.holdFailures} refused, ${abuse.stillOpen} open at the end), ${abuse.churned} churned, ${abuse.nonReaderRequests} unread requests sent; good client p99 ${(abuse.aloneP99Us / 1000).toFixed(2)} ms alone, ${(abuse.abuseP99Us / 1000).toFixed(2)} ms under abuse, ${abuse.goodErrors} errors; server RSS ${mib(abuse.rssBefore)} -> peak ${mib(abuse.rssPeak)}; exit ${loadExit}`,
);

// 5. Graceful shutdown.
const shutdown = await runShutdown();
console.log(`SIGTERM: ${shutdown.inFlightOk}/${shutdown.inFlight} in-flight completed, ${shutdown.lateShutdown}/${shutdown.lateRequests} late requests ESHUTDOWN, ${shutdown.lateServed} served late, exit ${shutdown.exitCode} after ${shutdown.exitMs.toFixed(0)} ms`);

const result = {
  date: new Date().toISOString(),
  seed,
  quick,
  fuzz: { seconds: fuzzSeconds, reflex, nbdRequests: nbdReq, nbdHandshake: nbdHs, crashes: 0 },
  live: { ...live, goodErrors: live.goodErrors.length, serverExit: liveExit },
  crash: { ...crash, registry },
  load: { ...abuse, serverExit: loadExit },
  shutdown,
};
fs.mkdirSync(path.join(ROOT, 'results'), { recursive: true });
fs.writeFileSync(path.join(ROOT, 'results', 'reliability.json'), JSON.stringify(result, null, 2));
console.log('wrote results/reliability.json');
const ok = live.hung === 0 && live.goodErrors.length === 0 && live.goodMismatches === 0 && crash.lost === 0 && crash.readMismatches === 0 && abuse.goodErrors === 0 && shutdown.lateServed === 0 && shutdown.exitCode === 0;
process.exitCode = ok ? 0 : 1;
