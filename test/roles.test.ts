import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { basename } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';

/**
 * A process runs the roles it is given and loads nothing else: a balancer-only process starts no
 * mediasoup worker (app/ClusterNode.ts loads each role's module when it runs that role; the import
 * rules in .dependency-cruiser.cjs keep it so), an edge starts one per --workers.
 */

/** The programs a process's children run, by file name (ps exits 1 when there are none). */
function childCommands(pid: number): string[] {
  const ps = spawnSync('ps', ['--ppid', String(pid), '-o', 'args='], { encoding: 'utf8', timeout: 10_000 });
  return ps.stdout
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => basename(line.trim().split(/\s+/)[0]!));
}

/** mediasoup's worker binary, whatever its build named it (mediasoup-worker, mediasoup-worker-3.27.1-static-openssl). */
const isWorker = (command: string) => command.startsWith('mediasoup-worker');

describe('roles of a process', function () {
  let db: TestDatabase;
  const procs: RelaycastProcess[] = [];

  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    for (const p of procs) await p.stop();
    await db?.drop();
  });

  it('a balancer-only process has no mediasoup worker; an edge has its one', async () => {
    const balancer = await startRelaycast({ roles: ['balancer'], databaseUrl: db.url });
    procs.push(balancer);
    const edge = await startRelaycast({ roles: ['edge'], databaseUrl: db.url });
    procs.push(edge);

    const balancerHealth = (await (await fetch(`${balancer.url}/healthz`)).json()) as { roles: string[]; mediaWorkers?: number };
    assert.deepEqual(balancerHealth.roles, ['balancer']);
    assert.equal(balancerHealth.mediaWorkers, undefined, 'no media workers reported');
    assert.deepEqual(childCommands(balancer.child.pid!).filter(isWorker), [], 'no mediasoup-worker child');

    const edgeHealth = (await (await fetch(`${edge.url}/healthz`)).json()) as { mediaWorkers?: number };
    assert.equal(edgeHealth.mediaWorkers, 1);
    assert.equal(childCommands(edge.child.pid!).filter(isWorker).length, 1, 'the edge has its worker');
  });
});
