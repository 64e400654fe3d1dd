/**
 * What placement reads and locks: the host view, the batch of servers
 * waiting for a host, and where a request's group members and hinted
 * servers are.
 */
import type { HostState } from "../domain/placement.js";
import { HARD_POLICIES } from "../domain/placement.js";
import { isUp } from "../domain/service.js";
import type { TaskState } from "../domain/states.js";
import type { Instance, SchedulerHints } from "../domain/types.js";
import { aggregatesByHost } from "./aggregates.js";
import type { PoolConnection, Queryable } from "./db.js";
import { select } from "./db.js";
import { INSTANCE_COLUMNS, heldInstances } from "./instances.js";
import { listNodes } from "./nodes.js";
import { getServerGroup, groupMemberHosts, hostsOfServers } from "./server-groups.js";

/** Every host with its liveness (reported within `downTimeSeconds`) and aggregates. */
export async function loadHostStates(q: Queryable, downTimeSeconds: number): Promise<HostState[]> {
  const [nodes, aggregates] = await Promise.all([listNodes(q), aggregatesByHost(q)]);
  const now = Date.now();
  return nodes.map((n) => ({ ...n, up: isUp(n, downTimeSeconds, now), aggregates: aggregates.get(n.host) ?? [] }));
}

/**
 * Locks up to `limit` servers waiting for a host that no other controller
 * holds (SKIP LOCKED): those in one of `buildTasks`, and those in one of
 * `moveTasks` whose migration still waits for a target. Then the hard-policy server groups of the
 * batch, in id order and before any host row is claimed, so concurrent
 * batches take their locks in one order and members are placed one at a
 * time. Returns the servers, oldest first, and which of them are bare.
 */
export async function lockPlacementBatch(
  conn: PoolConnection,
  limit: number,
  tasks: { buildTasks: readonly TaskState[]; moveTasks: readonly TaskState[] },
): Promise<PlacementBatch> {
  const rows = await select(
    conn,
    // The task_state IN list is what the instances_task index serves;
    // moves also need their migration still waiting for a target.
    `SELECT ${INSTANCE_COLUMNS} FROM instances i
     WHERE task_state IN (?) AND deleted_at IS NULL
       AND (task_state IN (?)
         OR EXISTS (SELECT 1 FROM migrations m WHERE m.instance_uuid = i.uuid AND m.status = 'PRE_MIGRATING'))
     ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`,
    [[...tasks.buildTasks, ...tasks.moveTasks], tasks.buildTasks, limit],
  );
  const servers = heldInstances(conn, rows);
  const groups = [...new Set(servers.map((i) => i.serverGroupId).filter((g) => g !== null))].sort();
  if (groups.length) {
    await select(conn, "SELECT id FROM server_groups WHERE id IN (?) AND deleted_at IS NULL AND policy IN (?) ORDER BY id FOR UPDATE", [groups, HARD_POLICIES]);
  }
  if (servers.length === 0) return { servers, bare: new Set() };
  // Read once the rows are locked, by a statement of its own: a server's ports and volumes are read as
  // committed now, with the transaction that made the server (a locking read sees rows committed after the
  // snapshot its statement's plain reads use). No one adds either to a server whose row this transaction holds.
  const bare = await select<{ uuid: string }>(
    conn,
    `SELECT uuid FROM instances i WHERE uuid IN (?) AND requested_networks IS NULL
        AND NOT EXISTS (SELECT 1 FROM ports p WHERE p.device_id = i.uuid)
        AND NOT EXISTS (SELECT 1 FROM volume_attachments a WHERE a.instance_uuid = i.uuid)`,
    [servers.map((i) => i.uuid)],
  );
  return { servers, bare: new Set(bare.map((r) => r.uuid)) };
}

/** Servers placement locked, and which of them are bare: no interface (asked for or made) and no volume, so placing them binds and exports nothing. */
export interface PlacementBatch {
  readonly servers: Instance[];
  readonly bare: ReadonlySet<string>;
}

/**
 * The server group of a request (with where its other members run or are
 * moving to) and the hosts of its same_host / different_host servers (of
 * the hints' project only, when they have one). A group deleted meanwhile
 * no longer applies.
 */
export async function loadSurroundings(q: Queryable, r: { instanceUuid: string; serverGroupId: string | null; schedulerHints: SchedulerHints }) {
  const group = r.serverGroupId ? await getServerGroup(q, r.serverGroupId) : null;
  const [memberHosts, sameHost, differentHost] = await Promise.all([
    group ? groupMemberHosts(q, group.id, r.instanceUuid) : Promise.resolve(new Map<string, number>()),
    r.schedulerHints.sameHost.length ? hostsOfServers(q, r.schedulerHints.sameHost, r.schedulerHints.projectId) : Promise.resolve(undefined),
    r.schedulerHints.differentHost.length ? hostsOfServers(q, r.schedulerHints.differentHost, r.schedulerHints.projectId) : Promise.resolve(undefined),
  ]);
  return {
    group: group ? { id: group.id, policy: group.policy, maxServerPerHost: group.maxServerPerHost } : null,
    memberHosts,
    ...(sameHost ? { sameHost } : {}),
    ...(differentHost ? { differentHost } : {}),
  };
}
