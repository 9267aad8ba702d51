/**
 * The admin API: HTTP (or HTTPS) with JSON bodies on its own port, in front
 * of the ControlPlane. Every change goes through the ControlPlane's methods,
 * which check it, apply it to the workers and persist it.
 *
 * Authentication: everything under /api/ needs `Authorization: Bearer
 * <token>` except GET /api/stats; the observability endpoints (GET /,
 * GET /api/stats, GET /metrics, GET /healthz) are open so Prometheus and a
 * browser on the (trusted) admin network can read them. Mutations always
 * need the token. See docs/admin-api.md.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ControlPlane, TenantCreate } from './control-plane.ts';
import type { PortRecord, Result } from './registry.ts';
import { AdminMetrics } from './metrics.ts';
import { Sampler } from './sampler.ts';
import type { PushState } from './stats-push.ts';
import { statsView } from './admin-stats.ts';
import { STATUS_PAGE_HTML } from './status-page.ts';
import { tokenMatches } from './admin-token.ts';
import { PORT_BIND, TENANT_CREATE, TENANT_UPDATE, VOLUME_CREATE, VOLUME_RESIZE, checkObjective, validate } from './admin-validate.ts';

/** Request bodies larger than this are refused (413) without being buffered. */
export const MAX_BODY_BYTES = 64 * 1024;
export const DEFAULT_ADMIN_PORT = 7070;

export interface AdminServerOptions {
  control: ControlPlane;
  host: string;
  port: number;
  token: string;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** A sampler the caller owns; default: one started here and stopped by close(). */
  sampler?: Sampler;
  /** The stats pusher's counters, for /metrics (null or absent: not pushing). */
  pushState?: () => PushState | null;
}

export interface AdminServer {
  port: number;
  sampler: Sampler;
  close(): Promise<void>;
}

/** An answer: status and JSON (or text) body. */
interface Reply {
  status: number;
  body: unknown;
  type?: string;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const json = (status: number, body: unknown): Reply => ({ status, body });

function fromResult<T>(r: Result<T>, okStatus = 200, wrap?: (v: T) => unknown): Reply {
  if (!r.ok) return json(r.status, { error: r.reason });
  return json(okStatus, wrap ? wrap(r.value) : r.value);
}

function readBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      reject(new HttpError(413, `the body is larger than ${MAX_BODY_BYTES} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        failed = true;
        reject(new HttpError(413, `the body is larger than ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (failed) return;
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') {
        resolve(undefined);
        return;
      }
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new HttpError(400, `the body is not valid JSON: ${(err as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

function pathParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, `bad percent-encoding in "${raw}"`);
  }
}

export class AdminApi {
  private readonly control: ControlPlane;
  private readonly token: string;
  readonly sampler: Sampler;
  readonly metrics: AdminMetrics;

  constructor(control: ControlPlane, token: string, sampler: Sampler, pushState?: () => PushState | null) {
    this.control = control;
    this.token = token;
    this.sampler = sampler;
    this.metrics = new AdminMetrics(control, sampler, pushState);
  }

  /** Node's request handler: never throws, always answers. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.route(req).then(
      (r) => send(res, r),
      (err: unknown) => {
        if (err instanceof HttpError) send(res, json(err.status, { error: err.message }));
        else send(res, json(500, { error: `internal error: ${(err as Error).message}` }));
        // An unread oversized body would otherwise keep the socket busy.
        if (!req.complete) res.on('finish', () => req.destroy());
      },
    );
  }

  private authorized(req: http.IncomingMessage): boolean {
    const h = req.headers.authorization;
    if (typeof h !== 'string') return false;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    return m !== null && tokenMatches(m[1], this.token);
  }

  private async route(req: http.IncomingMessage): Promise<Reply> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://admin');
    const parts = url.pathname.split('/').filter((p) => p !== '');
    const c = this.control;

    // ---- open, read-only ----
    if (method === 'GET' && url.pathname === '/') return { status: 200, body: STATUS_PAGE_HTML, type: 'text/html; charset=utf-8' };
    if (method === 'GET' && url.pathname === '/healthz') return json(200, { ok: true });
    if (method === 'GET' && url.pathname === '/metrics') return { status: 200, body: await this.metrics.text(), type: this.metrics.contentType };
    if (method === 'GET' && url.pathname === '/api/stats') return json(200, statsView(c, this.sampler));

    if (parts[0] !== 'api') throw new HttpError(404, `no route ${method} ${url.pathname}`);
    if (!this.authorized(req)) {
      throw new HttpError(401, 'missing or wrong admin token: send "Authorization: Bearer <token>" (the token is in <data-dir>/admin.token)');
    }
    const [, kind, id, sub] = parts;
    const allowed = (ok: boolean, methods: string): void => {
      if (!ok) throw new HttpError(405, `${method} is not allowed on ${url.pathname} (allowed: ${methods})`);
    };

    if (kind === 'devices' && parts.length === 2) {
      allowed(method === 'GET', 'GET');
      return json(200, c.listDevices());
    }

    if (kind === 'tenants' && parts.length === 2) {
      allowed(method === 'GET' || method === 'POST', 'GET, POST');
      if (method === 'GET') return json(200, c.listTenants());
      const v = validate<TenantCreate>(await readBody(req), TENANT_CREATE, ['name', 'class']);
      if (!v.ok) return fromResult(v);
      const why = checkObjective(v.value, true);
      if (why !== null) return json(400, { error: why });
      const r = await c.createTenant(v.value);
      if (!r.ok) return json(r.status, { error: r.reason, admitted: r.status === 422 ? false : undefined });
      return json(201, { admitted: true, ...r.value });
    }
    if (kind === 'tenants' && parts.length === 3) {
      const name = pathParam(id);
      allowed(method === 'GET' || method === 'PATCH' || method === 'DELETE', 'GET, PATCH, DELETE');
      if (method === 'GET') {
        const t = c.getTenant(name);
        return t ? json(200, t) : json(404, { error: `no tenant ${name}` });
      }
      if (method === 'DELETE') return fromResult(await c.removeTenant(name));
      const v = validate<Partial<TenantCreate>>(await readBody(req), TENANT_UPDATE, []);
      if (!v.ok) return fromResult(v);
      const current = c.getTenant(name);
      // Turning a BE tenant into LC needs a full objective, like creating one.
      const becomesLc = v.value.class === 'LC' && current !== undefined && current.class !== 'LC';
      const why = checkObjective({ ...v.value, class: v.value.class ?? current?.class }, becomesLc);
      if (why !== null) return json(400, { error: why });
      const r = await c.updateTenant(name, v.value);
      if (!r.ok) return json(r.status, { error: r.reason, admitted: r.status === 422 ? false : undefined });
      return json(200, { admitted: true, tenant: r.value });
    }
    if (kind === 'tenants' && parts.length === 4 && sub === 'credential') {
      const name = pathParam(id);
      allowed(method === 'POST' || method === 'DELETE', 'POST, DELETE');
      if (method === 'POST') {
        const body = await readBody(req);
        if (body !== undefined) {
          const v = validate(body, {}, []);
          if (!v.ok) return fromResult(v);
        }
        return fromResult(await c.createCredential(name), 201);
      }
      return fromResult(await c.removeCredential(name), 200, (cr) => ({ tenant: cr.tenant, createdAt: cr.createdAt }));
    }

    if (kind === 'volumes' && parts.length === 2) {
      allowed(method === 'GET' || method === 'POST', 'GET, POST');
      if (method === 'GET') return json(200, c.listVolumes());
      const v = validate<{ name: string; owner: string; size: number; offset?: number; device?: string }>(await readBody(req), VOLUME_CREATE, ['name', 'owner', 'size']);
      if (!v.ok) return fromResult(v);
      return fromResult(await c.createVolume(v.value), 201);
    }
    if (kind === 'volumes' && parts.length === 3) {
      allowed(method === 'GET' || method === 'PATCH' || method === 'DELETE', 'GET, PATCH, DELETE');
      const name = pathParam(id);
      if (method === 'GET') {
        const v = c.getVolume(name);
        if (v === undefined) throw new HttpError(404, `no volume ${name}`);
        return json(200, v);
      }
      if (method === 'PATCH') {
        const v = validate<{ size: number }>(await readBody(req), VOLUME_RESIZE, ['size']);
        if (!v.ok) return fromResult(v);
        return fromResult(await c.resizeVolume(name, v.value.size));
      }
      return fromResult(await c.removeVolume(name));
    }

    if (kind === 'ports' && parts.length === 2) {
      allowed(method === 'GET' || method === 'POST', 'GET, POST');
      if (method === 'GET') return json(200, [...c.registry.ports.values()]);
      const v = validate<PortRecord>(await readBody(req), PORT_BIND, ['port', 'tenant', 'volume']);
      if (!v.ok) return fromResult(v);
      return fromResult(await c.bindPort(v.value), 201);
    }
    if (kind === 'ports' && parts.length === 3) {
      allowed(method === 'DELETE', 'DELETE');
      if (!/^\d{1,5}$/.test(id)) throw new HttpError(400, `"${id}" is not a port number`);
      return fromResult(await c.unbindPort(Number(id)));
    }

    throw new HttpError(404, `no route ${method} ${url.pathname}`);
  }
}

function send(res: http.ServerResponse, r: Reply): void {
  if (res.headersSent) return;
  const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body) + '\n';
  res.writeHead(r.status, {
    'content-type': r.type ?? 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const ownSampler = opts.sampler === undefined;
  const sampler = opts.sampler ?? new Sampler(opts.control);
  const api = new AdminApi(opts.control, opts.token, sampler, opts.pushState);
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => api.handle(req, res);
  const server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : http.createServer(handler);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (ownSampler) sampler.start();
  return {
    port: (server.address() as AddressInfo).port,
    sampler,
    close: async () => {
      if (ownSampler) sampler.stop();
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// The server loads this module lazily and takes both entry points from it.
export { loadOrCreateAdminToken } from './admin-token.ts';
