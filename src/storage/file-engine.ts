import fs from 'node:fs';
import { Errno, Op, type CompletionHandler, type Engine, type IoRequest } from './engine.ts';

export interface FileEngineOptions {
  /** Size in bytes; a smaller regular file is extended (sparse). Default: the file's size. */
  size?: number;
  /** Create the file when it does not exist. */
  create?: boolean;
}

/**
 * Portable engine on Node's fs (libuv thread pool): a regular file or block
 * device. It is the fallback where the io_uring engine cannot run.
 *
 * It uses buffered I/O: O_DIRECT needs page-aligned memory, which JavaScript
 * cannot allocate without the native addon. Durability therefore comes from
 * fdatasync on FLUSH and after FUA writes. TRIM and WRITE_ZEROES write zeros
 * (Node has no fallocate); the io_uring engine punches holes instead.
 */
export class FileEngine implements Engine {
  readonly name = 'file';
  readonly blockSize = 1;
  readonly size: number;
  readonly path: string;
  onComplete: CompletionHandler = () => {
    throw new Error('FileEngine: onComplete not set');
  };
  private readonly fd: number;
  private pending = 0;
  private closing: (() => void) | null = null;
  private static zeros = Buffer.alloc(1 << 20);

  constructor(path: string, opts: FileEngineOptions = {}) {
    this.path = path;
    const flags = fs.constants.O_RDWR | (opts.create ? fs.constants.O_CREAT : 0);
    this.fd = fs.openSync(path, flags, 0o600);
    const st = fs.fstatSync(this.fd);
    let size = st.isBlockDevice() ? blockDeviceSize(this.fd) : st.size;
    if (opts.size !== undefined) {
      if (st.isFile() && size < opts.size) fs.ftruncateSync(this.fd, opts.size);
      else if (size < opts.size) throw new Error(`${path} holds ${size} bytes, fewer than the ${opts.size} asked for`);
      size = opts.size;
    }
    this.size = size;
  }

  get inFlight(): number {
    return this.pending;
  }

  allocBuffer(length: number): Buffer {
    return Buffer.allocUnsafeSlow(length);
  }

  submit(req: IoRequest): void {
    this.pending++;
    if (req.op !== Op.FLUSH && (req.offset < 0 || req.offset + req.length > this.size)) {
      queueMicrotask(() => this.finish(req, Errno.EINVAL));
      return;
    }
    switch (req.op) {
      case Op.READ:
        this.readAll(req, 0);
        return;
      case Op.WRITE:
        this.writeAll(req, req.buf!, 0);
        return;
      case Op.FLUSH:
        fs.fdatasync(this.fd, (err) => this.finish(req, err ? errnoOf(err) : 0));
        return;
      case Op.TRIM:
      case Op.WRITE_ZEROES:
        this.zeroAll(req, 0);
        return;
      default:
        queueMicrotask(() => this.finish(req, Errno.EOPNOTSUPP));
    }
  }

  kick(): void {}

  async close(): Promise<void> {
    if (this.pending > 0) await new Promise<void>((resolve) => (this.closing = resolve));
    fs.closeSync(this.fd);
  }

  private readAll(req: IoRequest, done: number): void {
    fs.read(this.fd, req.buf!, done, req.length - done, req.offset + done, (err, n) => {
      if (err) return this.finish(req, errnoOf(err));
      if (n === 0) {
        // Past the end of a file shorter than its declared size: the hole reads as zeros.
        req.buf!.fill(0, done, req.length);
        return this.finish(req, 0);
      }
      if (done + n < req.length) return this.readAll(req, done + n);
      this.finish(req, 0);
    });
  }

  private writeAll(req: IoRequest, src: Buffer, done: number): void {
    fs.write(this.fd, src, done, req.length - done, req.offset + done, (err, n) => {
      if (err) return this.finish(req, errnoOf(err));
      if (done + n < req.length) return this.writeAll(req, src, done + n);
      if (req.fua) fs.fdatasync(this.fd, (e) => this.finish(req, e ? errnoOf(e) : 0));
      else this.finish(req, 0);
    });
  }

  private zeroAll(req: IoRequest, done: number): void {
    const n = Math.min(req.length - done, FileEngine.zeros.length);
    if (n === 0) return this.finish(req, 0);
    fs.write(this.fd, FileEngine.zeros, 0, n, req.offset + done, (err, wrote) => {
      if (err) return this.finish(req, errnoOf(err));
      this.zeroAll(req, done + wrote);
    });
  }

  private finish(req: IoRequest, result: number): void {
    req.result = result;
    this.pending--;
    this.onComplete(req);
    if (this.pending === 0 && this.closing) this.closing();
  }
}

function errnoOf(err: NodeJS.ErrnoException): number {
  return typeof err.errno === 'number' && err.errno < 0 ? err.errno : Errno.EIO;
}

/** Size of a block device: seek to its end (no ioctl from JavaScript). */
function blockDeviceSize(fd: number): number {
  // fs has no lseek; reading fstat size is 0 for block devices. Ask /sys via the fd's path.
  const link = fs.readlinkSync(`/proc/self/fd/${fd}`);
  const name = link.replace(/^\/dev\//, '');
  const sectors = Number(fs.readFileSync(`/sys/class/block/${name}/size`, 'utf8').trim());
  return sectors * 512;
}
