/**
 * Host aggregates (Nova's): named sets of hosts with metadata. The
 * scheduler matches flavors' `aggregate_instance_extra_specs:*` against the
 * metadata, and an `availability_zone` key puts the hosts in that zone.
 */
import { randomUUID } from "node:crypto";
import type { Queryable, Row } from "./db.js";
import { exec, noteChange, select } from "./db.js";
import { effectiveZone } from "../domain/placement.js";

/** An aggregate and its hosts. */
export interface Aggregate {
  readonly id: string;
  readonly name: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly hosts: readonly string[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

function parseMetadata(v: unknown): Record<string, string> {
  const o = typeof v === "string" ? (JSON.parse(v) as unknown) : v;
  return o && typeof o === "object" ? (o as Record<string, string>) : {};
}

async function withHosts(q: Queryable, rows: Row[]): Promise<Aggregate[]> {
  if (rows.length === 0) return [];
  const members = await select<{ aggregate_id: string; host: string }>(
    q,
    `SELECT aggregate_id, host FROM aggregate_hosts WHERE aggregate_id IN (${rows.map(() => "?").join(",")}) ORDER BY host`,
    rows.map((r) => r.id),
  );
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    metadata: parseMetadata(r.metadata),
    hosts: members.filter((m) => m.aggregate_id === r.id).map((m) => m.host),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }));
}

export async function createAggregate(q: Queryable, a: { name: string; metadata: Record<string, string> }): Promise<Aggregate> {
  const id = randomUUID();
  await exec(q, "INSERT INTO aggregates (id, name, metadata) VALUES (?, ?, ?)", [id, a.name, JSON.stringify(a.metadata)]);
  return (await getAggregate(q, id))!;
}

/** An aggregate by id or name; `lock` takes its row FOR UPDATE (changes to one aggregate then run one at a time). */
export async function getAggregate(q: Queryable, idOrName: string, opts: { lock?: boolean } = {}): Promise<Aggregate | null> {
  const rows = await select(q, `SELECT * FROM aggregates WHERE id = ? OR name = ? LIMIT 1${opts.lock ? " FOR UPDATE" : ""}`, [idOrName, idOrName]);
  return (await withHosts(q, rows))[0] ?? null;
}

/**
 * Other aggregates of `host` that put it in a zone other than `zone`: a host
 * is in one availability zone (Nova refuses the same).
 */
export async function zoneConflicts(q: Queryable, host: string, zone: string, exceptAggregate: string): Promise<{ name: string; zone: string }[]> {
  const rows = await select<{ name: string; metadata: unknown }>(
    q,
    "SELECT a.name, a.metadata FROM aggregate_hosts h JOIN aggregates a ON a.id = h.aggregate_id WHERE h.host = ? AND a.id <> ?",
    [host, exceptAggregate],
  );
  return rows
    .map((r) => ({ name: r.name, zone: parseMetadata(r.metadata).availability_zone ?? "" }))
    .filter((r) => r.zone !== "" && r.zone !== zone);
}

export async function listAggregates(q: Queryable): Promise<Aggregate[]> {
  return withHosts(q, await select(q, "SELECT * FROM aggregates ORDER BY name"));
}

/** Deletes an aggregate that holds no hosts; false when it does not exist. */
export async function deleteAggregate(q: Queryable, id: string): Promise<boolean> {
  const deleted = (await exec(q, "DELETE FROM aggregates WHERE id = ?", [id])).affectedRows === 1;
  noteChange(q, "hosts");
  return deleted;
}

/** Adds a host; false when it was in the aggregate already. */
export async function addAggregateHost(q: Queryable, id: string, host: string): Promise<boolean> {
  const res = await exec(q, "INSERT IGNORE INTO aggregate_hosts (aggregate_id, host) VALUES (?, ?)", [id, host]);
  await exec(q, "UPDATE aggregates SET updated_at = CURRENT_TIMESTAMP(3) WHERE id = ?", [id]);
  noteChange(q, "hosts");
  return res.affectedRows === 1;
}

/** Removes a host; false when it was not in the aggregate. */
export async function removeAggregateHost(q: Queryable, id: string, host: string): Promise<boolean> {
  const res = await exec(q, "DELETE FROM aggregate_hosts WHERE aggregate_id = ? AND host = ?", [id, host]);
  await exec(q, "UPDATE aggregates SET updated_at = CURRENT_TIMESTAMP(3) WHERE id = ?", [id]);
  noteChange(q, "hosts");
  return res.affectedRows === 1;
}

/** Replaces the metadata. */
export async function setAggregateMetadata(q: Queryable, id: string, metadata: Record<string, string>): Promise<void> {
  await exec(q, "UPDATE aggregates SET metadata = ?, updated_at = CURRENT_TIMESTAMP(3) WHERE id = ?", [JSON.stringify(metadata), id]);
  noteChange(q, "hosts");
}

/** Every host's aggregates (name and metadata), for the scheduler's view. */
export async function aggregatesByHost(q: Queryable): Promise<Map<string, { name: string; metadata: Record<string, string> }[]>> {
  const rows = await select<{ host: string; name: string; metadata: unknown }>(
    q,
    "SELECT h.host, a.name, a.metadata FROM aggregate_hosts h JOIN aggregates a ON a.id = h.aggregate_id ORDER BY a.name",
  );
  const out = new Map<string, { name: string; metadata: Record<string, string> }[]>();
  for (const r of rows) {
    const list = out.get(r.host) ?? [];
    list.push({ name: r.name, metadata: parseMetadata(r.metadata) });
    out.set(r.host, list);
  }
  return out;
}

/**
 * Availability zones and their hosts: a host is in its aggregates'
 * `availability_zone` if one sets it, else in the zone its agent reports.
 */
export async function availabilityZones(q: Queryable): Promise<Map<string, string[]>> {
  const [nodes, aggs] = await Promise.all([
    select<{ host: string; zone: string }>(q, "SELECT host, zone FROM compute_nodes ORDER BY host"),
    aggregatesByHost(q),
  ]);
  const zones = new Map<string, string[]>();
  for (const n of nodes) {
    const zone = effectiveZone(aggs.get(n.host), n.zone);
    zones.set(zone, [...(zones.get(zone) ?? []), n.host]);
  }
  return new Map([...zones.entries()].sort((a, b) => a[0].localeCompare(b[0])));
}

/** The availability zone of one host, as availabilityZones places it. */
export async function zoneOfHost(q: Queryable, host: string): Promise<string> {
  const [[node], aggs] = await Promise.all([
    select<{ zone: string }>(q, "SELECT zone FROM compute_nodes WHERE host = ?", [host]),
    select<{ name: string; metadata: unknown }>(
      q,
      "SELECT a.name, a.metadata FROM aggregate_hosts h JOIN aggregates a ON a.id = h.aggregate_id WHERE h.host = ? ORDER BY a.name",
      [host],
    ),
  ]);
  return effectiveZone(
    aggs.map((a) => ({ name: a.name, metadata: parseMetadata(a.metadata) })),
    node?.zone ?? "",
  );
}
