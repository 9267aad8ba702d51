/**
 * `reflex volume create|list|resize|rm`: volumes (byte ranges of a device owned by
 * one tenant) through the admin API.
 */
import { parseArgs } from 'node:util';
import { parseSize } from '../control/config.ts';
import { COMMON_HELP, COMMON_OPTIONS, clientFrom, fmtSize, intFlag, reportFailure, table } from './admin-client.ts';
import { UsageError } from './usage-error.ts';

const HELP = `usage: reflex volume <create|list|resize|rm> [options]

  reflex volume create NAME --owner TENANT --size SIZE [--offset N] [--device D]
      --size      bytes, or with a binary unit: 64M, 1G
      --offset    byte offset on the device (sector aligned); default: first free range
      --device    default: the owner's device
  reflex volume list
  reflex volume resize NAME --size SIZE
      grows in place (the range after the volume must be free) or shrinks
      (the freed tail is zeroed); connections see the new size when they
      reconnect, and a shrink cuts them
  reflex volume rm NAME          also unbinds ports that reach the volume; its
                                 bytes are zeroed before the range is reused

${COMMON_HELP}
`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  owner: { type: 'string' },
  size: { type: 'string' },
  offset: { type: 'string' },
  device: { type: 'string' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [sub, ...rest] = positionals;
  if (values.help || sub === undefined) {
    console.log(HELP);
    return values.help ? 0 : 2;
  }
  const creating = values.owner !== undefined || values.offset !== undefined || values.device !== undefined;
  if (sub !== 'create' && creating) throw new UsageError(`volume ${sub}: --owner, --offset and --device apply to create only`);
  if (sub !== 'create' && sub !== 'resize' && values.size !== undefined) throw new UsageError(`volume ${sub}: --size applies to create and resize only`);
  if (sub !== 'list' && rest.length !== 1) throw new UsageError(`volume ${sub} needs exactly one volume NAME`);
  switch (sub) {
    case 'create': {
      const name = rest[0];
      if (values.owner === undefined || values.size === undefined) throw new UsageError('volume create needs --owner and --size');
      const body: Record<string, unknown> = { name, owner: values.owner, size: parseSize(values.size, '--size') };
      const offset = intFlag('--offset', values.offset);
      if (offset !== undefined) body.offset = offset;
      if (values.device !== undefined) body.device = values.device;
      const a = await clientFrom(values).request('POST', '/api/volumes', body);
      if (a.status !== 201) return reportFailure(`volume ${name}`, a);
      if (values.json) console.log(JSON.stringify(a.body, null, 2));
      else console.log(`volume ${name} created: ${a.body.device} offset ${a.body.offset}, ${fmtSize(a.body.size)}, owner ${a.body.owner}`);
      return 0;
    }
    case 'list': {
      if (rest.length > 0) throw new UsageError('volume list takes no NAME');
      const a = await clientFrom(values).request('GET', '/api/volumes');
      if (a.status !== 200) return reportFailure('volume list', a);
      if (values.json) {
        console.log(JSON.stringify(a.body, null, 2));
        return 0;
      }
      const rows = (a.body as any[]).map((v) => [v.name, v.owner, v.device, String(v.offset), String(v.size), fmtSize(v.size)]);
      console.log(table(['NAME', 'OWNER', 'DEVICE', 'OFFSET', 'BYTES', 'SIZE'], rows));
      return 0;
    }
    case 'resize': {
      const name = rest[0];
      if (values.size === undefined) throw new UsageError('volume resize needs --size');
      const a = await clientFrom(values).request('PATCH', `/api/volumes/${encodeURIComponent(name)}`, { size: parseSize(values.size, '--size') });
      if (a.status !== 200) return reportFailure(`volume ${name}`, a);
      if (values.json) console.log(JSON.stringify(a.body, null, 2));
      else console.log(`volume ${name} is now ${fmtSize(a.body.size)} (${a.body.size} bytes) at offset ${a.body.offset} of ${a.body.device}`);
      return 0;
    }
    case 'rm': {
      const a = await clientFrom(values).request('DELETE', `/api/volumes/${encodeURIComponent(rest[0])}`);
      if (a.status !== 200) return reportFailure(`volume ${rest[0]}`, a);
      if (values.json) console.log(JSON.stringify(a.body, null, 2));
      else console.log(`volume ${rest[0]} removed`);
      return 0;
    }
    default:
      throw new UsageError(`volume: unknown subcommand "${sub}" (create, list, resize, rm)`);
  }
}
