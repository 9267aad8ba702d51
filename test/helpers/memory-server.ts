import { after, before } from 'node:test';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';

/**
 * An in-process server on a memory device for the tests of one file: started
 * before them, closed after. Read `srv` and `port` inside tests.
 */
export function useMemoryServer(memory = '64M', workers = 1): { readonly srv: RunningServer; readonly port: number } {
  let srv: RunningServer | null = null;
  before(async () => {
    srv = await startServer(resolveConfig({ memory, workers, ports: [{ port: 0 }] }, workers));
  });
  after(async () => {
    await srv?.close();
  });
  return {
    get srv() {
      if (srv === null) throw new Error('the test server is not running');
      return srv;
    },
    get port() {
      return this.srv.bindings[0].port;
    },
  };
}
