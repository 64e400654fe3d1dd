import type { RequestedNetworks } from "../domain/network.js";
import type { Fault, Instance, SchedulerHints } from "../domain/types.js";
import type { PowerState, TaskState, VmState } from "../domain/states.js";
import { PLACEMENT_TASKS, STATUS_TASKS } from "../domain/states.js";
import { hostnameOf } from "../domain/guest.js";
import type { PoolConnection, Queryable, Row } from "./db.js";
import { recordChange } from "./changes.js";
import { exec, json, noteChange, select, txLocal } from "./db.js";
import { noteNetworkChange, touch } from "./network-changes.js";

/** Every column an Instance is made of (rowToInstance). */
export const INSTANCE_COLUMNS = `id, uuid, name, project_id, request_id, flavor_id, flavor_name, vcpus, ram_mb, disk_gb, extra_specs,
  image_id, host, vm_state, task_state, task_deadline, power_state, fault, metadata, attempt, tried_hosts,
  locked_by, locked_reason, shelved_image_id, boots_from_volume, key_name, key_data, hostname, config_drive, description, tags, created_at, updated_at, launched_at, deleted_at,
  availability_zone, server_group_id, scheduler_hints, alternate_hosts`;

export function rowToInstance(r: Row): Instance {
  return {
    seq: Number(r.id),
    uuid: r.uuid,
    name: r.name,
    projectId: r.project_id,
    requestId: r.request_id,
    flavor: { id: r.flavor_id, name: r.flavor_name, vcpus: r.vcpus, ramMb: Number(r.ram_mb), diskGb: Number(r.disk_gb) },
    extraSpecs: json(r.extra_specs, {}),
    imageId: r.image_id,
    availabilityZone: r.availability_zone ?? "",
    serverGroupId: r.server_group_id ?? null,
    schedulerHints: { sameHost: [], differentHost: [], ...json<Partial<SchedulerHints>>(r.scheduler_hints, {}) },
    alternateHosts: json<string[]>(r.alternate_hosts, []),
    host: r.host,
    vmState: r.vm_state,
    taskState: r.task_state,
    taskDeadline: r.task_deadline,
    powerState: r.power_state,
    fault: json<Fault | null>(r.fault, null),
    metadata: json(r.metadata, {}),
    attempt: r.attempt,
    triedHosts: json(r.tried_hosts, []),
    lockedBy: r.locked_by,
    lockedReason: r.locked_reason,
    shelvedImageId: r.shelved_image_id,
    bootsFromVolume: r.boots_from_volume === 1,
    keyName: r.key_name ?? null,
    keyData: r.key_data ?? null,
    hostname: r.hostname || hostnameOf(r.name, r.uuid),
    configDrive: r.config_drive === 1,
    description: r.description ?? "",
    tags: json<string[]>(r.tags, []),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    launchedAt: r.launched_at,
    deletedAt: r.deleted_at,
  };
}

export interface NewInstance {
  readonly uuid: string;
  readonly name: string;
  readonly projectId: string;
  readonly requestId: string;
  readonly flavor: Instance["flavor"];
  readonly extraSpecs: Readonly<Record<string, string>>;
  readonly imageId: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly availabilityZone?: string;
  readonly serverGroupId?: string | null;
  readonly schedulerHints?: SchedulerHints;
  /** The network interfaces asked for, allocated when it is placed (null: none). */
  readonly requestedNetworks?: RequestedNetworks | null;
  /** Its root disk is a volume (reserved in the same transaction). */
  readonly bootsFromVolume?: boolean;
  /** The key pair it is made with: its name and the public key (a copy). */
  readonly keypair?: { readonly name: string; readonly publicKey: string } | null;
  /** What its guest is given: user data (null: none) and a config drive. */
  readonly userData?: Uint8Array | null;
  readonly configDrive?: boolean;
  readonly description?: string;
  readonly tags?: readonly string[];
  /** Its first task (default SCHEDULING; BLOCK_DEVICE_MAPPING while the volume it boots from is made). */
  readonly taskState?: "SCHEDULING" | "BLOCK_DEVICE_MAPPING";
}

/**
 * Inserts an instance in BUILDING / SCHEDULING (or its `taskState`);
 * `schedulingDeadline` is when that task times out. Its first change (the
 * feed's BUILD event) is recorded with it; returns it as stored.
 */
export async function insertInstance(q: Queryable, n: NewInstance, schedulingDeadline: Date): Promise<Instance> {
  const now = new Date();
  // The columns as the database gives them back; the others take their defaults below.
  const cols = {
    uuid: n.uuid,
    name: n.name,
    project_id: n.projectId,
    request_id: n.requestId,
    flavor_id: n.flavor.id,
    flavor_name: n.flavor.name,
    vcpus: n.flavor.vcpus,
    ram_mb: n.flavor.ramMb,
    disk_gb: n.flavor.diskGb,
    extra_specs: JSON.stringify(n.extraSpecs),
    image_id: n.imageId,
    vm_state: "BUILDING",
    task_state: n.taskState ?? "SCHEDULING",
    task_deadline: schedulingDeadline,
    power_state: "NOSTATE",
    metadata: JSON.stringify(n.metadata),
    tried_hosts: "[]",
    availability_zone: n.availabilityZone ?? "",
    server_group_id: n.serverGroupId ?? null,
    scheduler_hints: n.schedulerHints && (n.schedulerHints.sameHost.length || n.schedulerHints.differentHost.length) ? JSON.stringify(n.schedulerHints) : null,
    boots_from_volume: n.bootsFromVolume ? 1 : 0,
    key_name: n.keypair?.name ?? null,
    key_data: n.keypair?.publicKey ?? null,
    hostname: hostnameOf(n.name, n.uuid),
    config_drive: n.configDrive ? 1 : 0,
    description: n.description ?? "",
    tags: n.tags?.length ? JSON.stringify(n.tags) : null,
    created_at: now,
    updated_at: now,
  };
  const res = await exec(q, "INSERT INTO instances SET ?", [
    {
      ...cols,
      requested_networks: n.requestedNetworks && n.requestedNetworks.networks.length ? JSON.stringify(n.requestedNetworks) : null,
      user_data: n.userData?.length ? Buffer.from(n.userData) : null,
    },
  ]);
  const defaults = { host: null, fault: null, attempt: 0, locked_by: null, locked_reason: "", shelved_image_id: null, launched_at: null, deleted_at: null, alternate_hosts: null };
  // The new row is this transaction's until it commits: it is not read back.
  const inst = hold(q, { id: res.insertId, ...cols, ...defaults } as unknown as Row);
  recordChange(q, inst);
  noteChange(q, "placements");
  return inst;
}

/** The user data a server was made with (empty: none); read only by the ops that build it on a host. */
export async function getUserData(q: Queryable, uuid: string): Promise<Buffer> {
  const [r] = await select<{ user_data: Buffer | null }>(q, "SELECT user_data FROM instances WHERE uuid = ?", [uuid]);
  return r?.user_data ?? Buffer.alloc(0);
}

/** Reads one instance; `lock` takes a row lock (inside a transaction). */
export async function getInstance(q: Queryable, uuid: string, opts: { lock?: boolean } = {}): Promise<Instance | null> {
  const known = held(q)?.get(uuid);
  if (known) return rowToInstance(known);
  const rows = await select(q, `SELECT ${INSTANCE_COLUMNS} FROM instances WHERE uuid = ?${opts.lock ? " FOR UPDATE" : ""}`, [uuid]);
  if (!rows[0]) return null;
  return opts.lock ? hold(q, rows[0]) : rowToInstance(rows[0]);
}

const HELD = Symbol("instance rows this transaction holds locked");

/**
 * The instance rows the current transaction holds the lock of (read FOR
 * UPDATE, inserted or updated in it), as they are now: no one else can
 * change such a row before the transaction ends, so reading it again, and
 * the result of an update, need no query. Undefined outside a transaction.
 */
function held(q: Queryable): Map<string, Row> | undefined {
  return txLocal(q, HELD, () => new Map<string, Row>(), { cache: true });
}

/** Remembers a row the transaction holds locked; returns it as an instance. */
function hold(q: Queryable, row: Row): Instance {
  held(q)?.set(row.uuid, row);
  return rowToInstance(row);
}

/** Rows of {@link INSTANCE_COLUMNS} the transaction has just read FOR UPDATE, as instances it holds. */
export function heldInstances(conn: PoolConnection, rows: readonly Row[]): Instance[] {
  return rows.map((r) => hold(conn, r));
}

export async function getInstanceByRequest(q: Queryable, projectId: string, requestId: string): Promise<Instance | null> {
  const rows = await select(q, `SELECT ${INSTANCE_COLUMNS} FROM instances WHERE project_id = ? AND request_id = ?`, [projectId, requestId]);
  return rows[0] ? rowToInstance(rows[0]) : null;
}

export interface InstanceFilter {
  readonly projectId?: string;
  readonly host?: string;
  readonly nameContains?: string;
  readonly vmState?: VmState;
  readonly tasks?: readonly TaskState[];
  readonly includeDeleted?: boolean;
  /** Tag filters (Nova's): all of `tags`, any of `tagsAny`, not all of `notTags`, none of `notTagsAny`. */
  readonly tags?: readonly string[];
  readonly tagsAny?: readonly string[];
  readonly notTags?: readonly string[];
  readonly notTagsAny?: readonly string[];
  /** Only instances created before this sequence number (paging, newest first). */
  readonly beforeSeq?: number;
  readonly limit: number;
}

export async function listInstances(q: Queryable, f: InstanceFilter): Promise<Instance[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.projectId !== undefined) {
    where.push("project_id = ?");
    params.push(f.projectId);
  }
  if (f.host) {
    where.push("host = ?");
    params.push(f.host);
  }
  if (f.nameContains) {
    where.push("INSTR(name, ?) > 0");
    params.push(f.nameContains);
  }
  if (f.tasks?.length) {
    where.push("task_state IN (?)");
    params.push(f.tasks);
  } else if (f.vmState) {
    where.push("vm_state = ? AND (task_state IS NULL OR task_state NOT IN (?))");
    params.push(f.vmState, STATUS_TASKS);
  }
  if (!f.includeDeleted && f.vmState !== "DELETED") where.push("deleted_at IS NULL");
  const tagFilter = (list: readonly string[] | undefined, sql: string) => {
    if (!list?.length) return;
    where.push(sql);
    params.push(JSON.stringify(list));
  };
  tagFilter(f.tags, "JSON_CONTAINS(COALESCE(tags, '[]'), ?)");
  tagFilter(f.tagsAny, "JSON_OVERLAPS(COALESCE(tags, '[]'), ?)");
  tagFilter(f.notTags, "NOT JSON_CONTAINS(COALESCE(tags, '[]'), ?)");
  tagFilter(f.notTagsAny, "NOT JSON_OVERLAPS(COALESCE(tags, '[]'), ?)");
  if (f.beforeSeq !== undefined) {
    where.push("id < ?");
    params.push(f.beforeSeq);
  }
  const sql = `SELECT ${INSTANCE_COLUMNS} FROM instances ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY id DESC LIMIT ?`;
  params.push(f.limit);
  return (await select(q, sql, params)).map(rowToInstance);
}

/** Fields an update may change. `null` clears a nullable column. */
export interface InstancePatch {
  readonly vmState?: VmState;
  /** A task needs a deadline (see domain/tasks.ts); clearing the task clears it. */
  readonly taskState?: TaskState | null;
  readonly taskDeadline?: Date | null;
  readonly powerState?: PowerState;
  readonly host?: string | null;
  readonly flavor?: Instance["flavor"] & { readonly extraSpecs?: Readonly<Record<string, string>> };
  readonly imageId?: string;
  readonly fault?: Fault | null;
  readonly attempt?: number;
  readonly triedHosts?: readonly string[];
  readonly alternateHosts?: readonly string[];
  readonly lockedBy?: "admin" | "owner" | null;
  readonly lockedReason?: string;
  readonly shelvedImageId?: string | null;
  readonly name?: string;
  readonly hostname?: string;
  readonly description?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  readonly tags?: readonly string[];
  readonly launchedAt?: Date;
  readonly deletedAt?: Date;
}

/**
 * Updates an instance (inside a transaction) and queues the result for the
 * change log that WatchServers streams. Returns the updated instance.
 */
export async function updateInstance(conn: PoolConnection, uuid: string, patch: InstancePatch): Promise<Instance> {
  if (patch.taskState && !patch.taskDeadline) throw new Error(`task ${patch.taskState} set on ${uuid} without a deadline`);
  // Each column set, with its value as the database gives it back.
  const now = new Date();
  const cols: Record<string, unknown> = { updated_at: now };
  const put = (col: string, v: unknown) => {
    cols[col] = v;
  };
  if (patch.vmState !== undefined) put("vm_state", patch.vmState);
  if (patch.taskState !== undefined) {
    put("task_state", patch.taskState);
    put("task_deadline", patch.taskState === null ? null : patch.taskDeadline);
  }
  if (patch.powerState !== undefined) put("power_state", patch.powerState);
  if (patch.host !== undefined) put("host", patch.host);
  if (patch.flavor !== undefined) {
    put("flavor_id", patch.flavor.id);
    put("flavor_name", patch.flavor.name);
    put("vcpus", patch.flavor.vcpus);
    put("ram_mb", patch.flavor.ramMb);
    put("disk_gb", patch.flavor.diskGb);
    if (patch.flavor.extraSpecs !== undefined) put("extra_specs", JSON.stringify(patch.flavor.extraSpecs));
  }
  if (patch.imageId !== undefined) put("image_id", patch.imageId);
  if (patch.fault !== undefined) put("fault", patch.fault === null ? null : JSON.stringify(patch.fault));
  if (patch.attempt !== undefined) put("attempt", patch.attempt);
  if (patch.triedHosts !== undefined) put("tried_hosts", JSON.stringify(patch.triedHosts));
  if (patch.alternateHosts !== undefined) put("alternate_hosts", JSON.stringify(patch.alternateHosts));
  if (patch.lockedBy !== undefined) put("locked_by", patch.lockedBy);
  if (patch.lockedReason !== undefined) put("locked_reason", patch.lockedReason);
  if (patch.shelvedImageId !== undefined) put("shelved_image_id", patch.shelvedImageId);
  if (patch.name !== undefined) put("name", patch.name);
  if (patch.hostname !== undefined) put("hostname", patch.hostname);
  if (patch.description !== undefined) put("description", patch.description);
  if (patch.metadata !== undefined) put("metadata", JSON.stringify(patch.metadata));
  if (patch.tags !== undefined) put("tags", patch.tags.length ? JSON.stringify(patch.tags) : null);
  if (patch.launchedAt !== undefined) put("launched_at", patch.launchedAt);
  if (patch.deletedAt !== undefined) put("deleted_at", patch.deletedAt);
  await exec(conn, "UPDATE instances SET ? WHERE uuid = ?", [cols, uuid]);
  // The row is locked now: as this transaction knew it, with the new values; else read once (and held from then on).
  const before = held(conn)?.get(uuid);
  const inst = before ? hold(conn, { ...before, ...cols } as Row) : await getInstance(conn, uuid, { lock: true });
  if (!inst) throw new Error(`instance ${uuid} vanished during update`);
  recordChange(conn, inst);
  if (patch.taskState && PLACEMENT_TASKS.includes(patch.taskState)) noteChange(conn, "placements");
  // The hosts it leaves and joins plug its ports (network sync; its ops carry them too).
  if (patch.host !== undefined) await noteNetworkChange(conn, [touch("server", uuid)]);
  return inst;
}

/** Locks the instances of `uuids` (in one read, in index order) and holds them for the transaction's reads. */
export async function lockInstances(conn: PoolConnection, uuids: readonly string[]): Promise<void> {
  const wanted = [...new Set(uuids)].filter((u) => !held(conn)?.has(u));
  if (wanted.length === 0) return;
  heldInstances(conn, await select(conn, `SELECT ${INSTANCE_COLUMNS} FROM instances WHERE uuid IN (?) FOR UPDATE`, [wanted]));
}

/** Instances whose task is past its deadline, locked for the reaper (SKIP LOCKED). */
export async function lockOverdue(conn: PoolConnection, now: Date, limit: number): Promise<Instance[]> {
  const rows = await select(
    conn,
    `SELECT ${INSTANCE_COLUMNS} FROM instances WHERE task_deadline < ? AND task_state IS NOT NULL
     ORDER BY task_deadline LIMIT ? FOR UPDATE SKIP LOCKED`,
    [now, limit],
  );
  return heldInstances(conn, rows);
}

/** The servers on each of `hosts` whose power state reports sync (not building, not deleted), by host (hosts without any are left out). */
export async function powerStatesOnHosts(q: Queryable, hosts: readonly string[]): Promise<Map<string, { uuid: string; powerState: PowerState; taskState: TaskState | null }[]>> {
  const out = new Map<string, { uuid: string; powerState: PowerState; taskState: TaskState | null }[]>();
  if (!hosts.length) return out;
  const rows = await select<{ uuid: string; host: string; power_state: PowerState; task_state: TaskState | null }>(
    q,
    "SELECT uuid, host, power_state, task_state FROM instances WHERE host IN (?) AND deleted_at IS NULL AND vm_state NOT IN ('BUILDING', 'DELETED')",
    [hosts],
  );
  for (const r of rows) {
    let list = out.get(r.host);
    if (!list) out.set(r.host, (list = []));
    list.push({ uuid: r.uuid, powerState: r.power_state, taskState: r.task_state });
  }
  return out;
}

/** Every server that is not deleted (of a project, or the one asked for), oldest first, in pages. */
export async function* currentServers(q: Queryable, f: { projectId?: string; instanceUuid?: string }): AsyncGenerator<Instance[]> {
  if (f.instanceUuid !== undefined) {
    const inst = await getInstance(q, f.instanceUuid);
    if (inst && !inst.deletedAt && (f.projectId === undefined || inst.projectId === f.projectId)) yield [inst];
    return;
  }
  let afterSeq = 0;
  for (;;) {
    const rows = await select(
      q,
      `SELECT ${INSTANCE_COLUMNS} FROM instances WHERE deleted_at IS NULL AND id > ?${f.projectId !== undefined ? " AND project_id = ?" : ""} ORDER BY id LIMIT 500`,
      f.projectId !== undefined ? [afterSeq, f.projectId] : [afterSeq],
    );
    if (rows.length) yield rows.map(rowToInstance);
    if (rows.length < 500) return;
    afterSeq = Number(rows[rows.length - 1]!.id);
  }
}

/** The hosts of servers, by server id (servers without a host or not found are left out). */
export async function hostsOf(q: Queryable, uuids: readonly string[]): Promise<Map<string, string>> {
  if (uuids.length === 0) return new Map();
  const rows = await select<{ uuid: string; host: string | null }>(q, "SELECT uuid, host FROM instances WHERE uuid IN (?)", [[...uuids]]);
  return new Map(rows.filter((r) => r.host !== null).map((r) => [r.uuid, r.host!]));
}

/** The servers a host has (not deleted). */
export async function serverIdsOnHost(q: Queryable, host: string): Promise<string[]> {
  return (await select<{ uuid: string }>(q, "SELECT uuid FROM instances WHERE host = ? AND deleted_at IS NULL", [host])).map((r) => r.uuid);
}
