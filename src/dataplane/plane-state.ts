/**
 * What the workers need to know of the registry: a plain-data snapshot the
 * main thread posts after every accepted change. Indices, not names, on
 * everything the data path touches.
 */
export interface PlaneState {
  /** Tenant id = counter row and scheduler slot; p95Us: an LC tenant's latency objective (null for BE). */
  tenants: Array<{ id: number; name: string; device: number; kind: 'LC' | 'BE'; rate: number; p95Us: number | null }>;
  volumes: Array<{ name: string; device: number; owner: number; offset: number; size: number }>;
  /** HMAC keys (hex) by tenant id, for ATTACH. */
  credentials: Array<{ tenant: number; secret: string }>;
  /** v1 ports: connections here are the tenant, on the volume, without ATTACH. */
  ports: Array<{ port: number; tenant: number; volume: string }>;
}
