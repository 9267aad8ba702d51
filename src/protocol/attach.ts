/**
 * ATTACH: how a connection proves it may act as a tenant on a volume
 * without sending a reusable secret.
 *
 * 1. The client sends HELLO; the reply carries a fresh 16-byte server nonce.
 * 2. The client sends ATTACH with payload
 *      u8 tenant length | tenant (UTF-8) | u8 volume length | volume (UTF-8)
 *      | 16-byte client nonce | 32-byte MAC
 *    where MAC = HMAC-SHA256(key = the tenant's secret,
 *      "reflex-attach-v1" 0x00 | server nonce | client nonce | tenant 0x00 volume).
 * 3. The server answers ATTACH with the volume's HELLO info, or EPERM.
 *
 * A server nonce serves one ATTACH attempt, so a recorded handshake cannot
 * be replayed on another connection or twice on the same one.
 */
import crypto from 'node:crypto';

export const NONCE_BYTES = 16;
export const MAC_BYTES = 32;
const LABEL = Buffer.from('reflex-attach-v1\0');

export interface AttachRequest {
  tenant: string;
  volume: string;
  clientNonce: Buffer;
  mac: Buffer;
}

export function attachMac(secretHex: string, serverNonce: Buffer, clientNonce: Buffer, tenant: string, volume: string): Buffer {
  return crypto
    .createHmac('sha256', Buffer.from(secretHex, 'hex'))
    .update(LABEL)
    .update(serverNonce)
    .update(clientNonce)
    .update(`${tenant}\0${volume}`, 'utf8')
    .digest();
}

export function encodeAttach(secretHex: string, serverNonce: Buffer, tenant: string, volume: string, clientNonce = crypto.randomBytes(NONCE_BYTES)): Buffer {
  const t = Buffer.from(tenant, 'utf8');
  const v = Buffer.from(volume, 'utf8');
  if (t.length === 0 || t.length > 255 || v.length === 0 || v.length > 255) throw new RangeError('tenant and volume names must be 1..255 bytes');
  return Buffer.concat([Buffer.from([t.length]), t, Buffer.from([v.length]), v, clientNonce, attachMac(secretHex, serverNonce, clientNonce, tenant, volume)]);
}

/** Parses an ATTACH payload; null when it is malformed. */
export function decodeAttach(p: Buffer): AttachRequest | null {
  let o = 0;
  if (p.length < 1) return null;
  const tl = p[o++];
  if (tl === 0 || o + tl + 1 > p.length) return null;
  const tenant = p.toString('utf8', o, o + tl);
  o += tl;
  const vl = p[o++];
  if (vl === 0 || o + vl + NONCE_BYTES + MAC_BYTES !== p.length) return null;
  const volume = p.toString('utf8', o, o + vl);
  o += vl;
  const clientNonce = Buffer.from(p.subarray(o, o + NONCE_BYTES));
  const mac = Buffer.from(p.subarray(o + NONCE_BYTES));
  return { tenant, volume, clientNonce, mac };
}

/** Constant-time check of a client's MAC. */
export function verifyAttach(req: AttachRequest, secretHex: string, serverNonce: Buffer): boolean {
  const want = attachMac(secretHex, serverNonce, req.clientNonce, req.tenant, req.volume);
  return want.length === req.mac.length && crypto.timingSafeEqual(want, req.mac);
}
