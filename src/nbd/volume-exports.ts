/**
 * The NBD view of the data plane's volumes: one export per volume, named
 * after its tenant, and the export the empty name ('') selects.
 *
 *   const table = new VolumeExports(ctx.volumes, engine.blockSize, ctx.maxRequestBytes);
 *   table.lookup(name): VolumeExport | undefined     '' is the first volume
 *   table.list(): ExportInfo[]
 *
 * Block sizes. Engines that take any byte range (memory, null, file:
 * blockSize 1) advertise minBlock 1, so even unaligned requests are served
 * exactly. An O_DIRECT engine (blockSize > 1) advertises minBlock =
 * blockSize; clients that asked for block sizes are then held to it by
 * validateRequest. Clients that did not ask (the kernel client, EXPORT_NAME)
 * and still send unaligned requests get EINVAL from the engine: the spec
 * lets a server refuse what its storage cannot do, and read-modify-write
 * behind the client's back would break the atomicity overlapping writers
 * expect. The kernel client sends 512-byte aligned requests, which covers
 * the usual 512-byte logical block devices.
 *
 * CAN_MULTI_CONN is advertised: every connection of every worker reaches the
 * same device, and FLUSH is a device-wide flush, so a FLUSH on one
 * connection covers writes acknowledged on any other.
 */
import { assert } from '../util/assert.ts';
import { checkExportInfo, type ExportInfo } from './export-info.ts';
import type { ExportedVolume } from '../dataplane/front-end.ts';

export interface VolumeExport {
  info: ExportInfo;
  volume: ExportedVolume;
}

/** Preferred I/O size advertised: the page size, what most clients use anyway. */
const PREFERRED_BLOCK = 4096;

export class VolumeExports {
  private readonly byName = new Map<string, VolumeExport>();
  private readonly all: ExportInfo[] = [];
  private readonly first: VolumeExport | undefined;

  constructor(volumes: ReadonlyMap<string, ExportedVolume>, engineBlockSize: number, maxRequestBytes: number) {
    const minBlock = Math.max(1, engineBlockSize);
    assert(minBlock <= 65536 && (minBlock & (minBlock - 1)) === 0, `engine block size ${engineBlockSize} cannot be advertised`);
    const maxBlock = Math.floor(Math.min(maxRequestBytes, 0xffffffff) / minBlock) * minBlock;
    assert(maxBlock >= minBlock, 'maxRequestBytes below the engine block size');
    for (const v of volumes.values()) {
      assert(v.offset % minBlock === 0, `volume ${v.name} is not aligned to the engine block size`);
      const info: ExportInfo = {
        name: v.name,
        description: `reflex volume of tenant ${v.name}`,
        size: v.size,
        minBlock,
        preferredBlock: Math.max(PREFERRED_BLOCK, minBlock),
        maxBlock,
        readOnly: false,
        canTrim: true,
        canMultiConn: true,
        canFlush: true,
        canFua: true,
        canWriteZeroes: true,
        // CACHE is advisory; the engines have no cache to fill, so it is a no-op that succeeds.
        canCache: true,
      };
      checkExportInfo(info);
      const e = { info, volume: v };
      this.byName.set(v.name, e);
      this.all.push(info);
    }
    this.first = this.byName.values().next().value;
  }

  /** The export for `name`; the empty name is the default export, the first volume. */
  lookup(name: string): VolumeExport | undefined {
    if (name === '') return this.first;
    return this.byName.get(name);
  }

  list(): ExportInfo[] {
    return this.all;
  }
}
