/**
 * A loopback TCP proxy that tests can break: `cut()` drops every connection
 * through it at once (as a server crash would), `freeze()` silently stops
 * forwarding on the connections open now while new ones work (a path that
 * died without a FIN or RST, or a hung server), and `blackhole` makes it
 * accept new connections and never forward a byte (a server that accepts
 * and then hangs). Counts what it accepted and what is
 * still open, so a test can see whether a client left a socket behind.
 */
import net from 'node:net';

export class TcpProxy {
  readonly server: net.Server;
  /** New connections are accepted and then ignored, not forwarded. */
  blackhole = false;
  accepted = 0;
  private readonly live = new Set<net.Socket>();
  private readonly pairs = new Set<{ frozen: boolean }>();

  private constructor(targetPort: number) {
    this.server = net.createServer((client) => {
      this.accepted++;
      this.live.add(client);
      client.on('close', () => this.live.delete(client));
      client.on('error', () => client.destroy());
      if (this.blackhole) {
        // Read and drop, so a close from the client is seen.
        client.resume();
        return;
      }
      const upstream = net.connect({ port: targetPort, host: '127.0.0.1' });
      const pair = { frozen: false };
      this.pairs.add(pair);
      this.live.add(upstream);
      upstream.on('close', () => {
        this.live.delete(upstream);
        this.pairs.delete(pair);
        client.destroy();
      });
      upstream.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      client.on('data', (d: Buffer) => {
        if (!pair.frozen) upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => {
        if (!pair.frozen) client.write(d);
      });
    });
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const p = new TcpProxy(targetPort);
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    return p;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Client-side sockets still open through (or held by) the proxy. */
  get openClients(): number {
    let n = 0;
    for (const s of this.live) if (s.remotePort !== undefined && s.localPort === this.port) n++;
    return n;
  }

  /** Stops forwarding, silently and for good, on every connection open now. */
  freeze(): void {
    for (const p of this.pairs) p.frozen = true;
  }

  /** Drops every connection, both sides. */
  cut(): void {
    for (const s of this.live) s.destroy();
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
