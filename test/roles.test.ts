import assert from 'node:assert/strict';
import { isMediaWorker, processTree } from '../kit/cpu.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';

/**
 * A process runs the roles it is given and loads nothing else: a balancer-only process starts no
 * mediasoup worker (app/ClusterNode.ts loads each role's module when it runs that role; the import
 * rules in .dependency-cruiser.cjs keep it so), an edge starts one per --workers.
 */

/** The mediasoup workers among a process's descendants. */
const workersOf = (pid: number) => processTree([pid]).filter((p) => p !== pid && isMediaWorker(p));

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
    assert.deepEqual(workersOf(balancer.child.pid!), [], 'no mediasoup-worker process');

    const edgeHealth = (await (await fetch(`${edge.url}/healthz`)).json()) as { mediaWorkers?: number };
    assert.equal(edgeHealth.mediaWorkers, 1);
    assert.equal(workersOf(edge.child.pid!).length, 1, 'the edge has its worker');
  });
});
