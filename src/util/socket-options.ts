import type { Socket } from 'node:net';

/**
 * Idle time before the kernel starts TCP keepalive probes (Node then probes
 * every second, ten times). A peer that dies or drops off the network
 * without closing its connection is noticed within about 40 s. That holds
 * for a connection with nothing unacknowledged; one that dies with data in
 * flight is ended by TCP's retransmission timeout instead (about 15 minutes
 * with Linux defaults), which Node gives no way to shorten.
 */
export const KEEPALIVE_IDLE_MS = 30_000;

/**
 * Options for every data connection, on both ends (server front ends and
 * the client library): no Nagle delay (requests and replies are small and
 * latency-bound), keepalive on.
 */
export function tuneDataSocket(socket: Socket): void {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
}
