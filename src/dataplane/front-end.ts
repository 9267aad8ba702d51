import type { SecureContext } from 'node:tls';
import type { DataPlane } from './data-plane.ts';
import type { CloseReason } from './worker-stats.ts';

/** A volume as a front end sees it: a tenant's byte range of the device. */
export interface ExportedVolume {
  /** Export name (NBD) / tenant name. */
  name: string;
  /** Index of the tenant in the worker's tables (counters, scheduler). */
  tenant: number;
  /** Byte offset of the volume on the device. */
  offset: number;
  /** Size in bytes. */
  size: number;
  /** The plane (device) serving this volume: submit its requests here. */
  plane: DataPlane;
}

/**
 * May a connection bound to `was` keep serving now that the volume is `now`?
 * Only if every byte it can address is still the same bytes of the same
 * volume: same offset and at least the size it was bound with. A grown
 * volume keeps its connections (they learn the new size when they
 * reconnect); a moved or shrunk one cuts them.
 */
export function stillCovers(was: { offset: number; size: number }, now: { offset: number; size: number }): boolean {
  return now.offset === was.offset && now.size >= was.size;
}

/**
 * May a connection bound to volume `was` keep serving it, now that the
 * worker's table says `now` (undefined: gone)? The same tenant's volume on
 * the same device, still covering every byte the connection can address.
 */
export function stillServes(was: ExportedVolume, now: ExportedVolume | undefined): boolean {
  return now !== undefined && now.tenant === was.tenant && now.plane === was.plane && stillCovers(was, now);
}

/** What every front end's connection needs from its worker. */
export interface FrontEndContext {
  /** Plane for replies before an export is chosen; requests go to the export's `plane`. */
  plane: DataPlane;
  /** Volumes this listener serves, by name. */
  volumes: ReadonlyMap<string, ExportedVolume>;
  /** Largest payload of one request, bytes. */
  maxRequestBytes: number;
  /** Requests one connection may have in flight before reading stops. */
  maxOutstanding: number;
  /** A connection still negotiating after this long is closed (NBD). */
  handshakeTimeoutMs: number;
  /** True while the server drains for shutdown. */
  isDraining: () => boolean;
  /** Called once when the connection is gone. */
  onClose: (reason: CloseReason) => void;
  /**
   * TLS for STARTTLS (NBD), when the server has a certificate. When set, the
   * front end requires TLS: no export is served over plaintext.
   */
  tls: SecureContext | null;
  /**
   * A certificate-less context for TLS-PSK (NBD) when `tls` is null: a
   * client that proves a tenant's credential as its pre-shared key needs no
   * server certificate.
   */
  pskTls: SecureContext;
  /** Tenant credentials (hex keys) by tenant id; the worker keeps it current. */
  credentials: ReadonlyMap<number, string>;
  /** Tenant ids by name (a TLS-PSK identity is a tenant name). */
  tenantByName: ReadonlyMap<string, number>;
  /** Called when the connection is bound to a tenant (after negotiation). */
  onAttach: (tenant: number) => void;
}
