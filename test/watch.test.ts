/**
 * WatchServers is an event stream with exactly-once resume: indexes are
 * handed out at commit and become visible strictly in order, so a client
 * that disconnects and resumes after the last index it saw gets every later
 * event exactly once — under concurrent writers too.
 */
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { status, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import type { WatchServersResponse } from "../gen/novamesh/compute/v1/server.js";
import { eventually, waitServers } from "./harness.js";
import type { Clients } from "./harness.js";
import { stack } from "./stack.js";

describe("WatchServers resume", () => {
  const fx = stack({ name: "watch", members: [], agents: ({ id }) => [{ host: `w${id}`, hosts: 2, capacity: { vcpus: 32, memoryMb: 65536, diskGb: 2000 } }] });
  const { env, admin, imageId } = fx;
  let admin2: Clients;

  before(async () => {
    // Two controllers write to one database: commits interleave.
    admin2 = env.admin(await env.startController());
  });

  function watch(c: Clients, afterIndex: number, sink: WatchServersResponse[], sendInitialState = false): ClientReadableStream<WatchServersResponse> {
    const stream = c.servers.raw.watchServers({ afterIndex, serverId: "", allProjects: true, sendInitialState }, c.servers.metadata());
    stream.on("data", (ev: WatchServersResponse) => sink.push(ev));
    stream.on("error", () => undefined);
    return stream;
  }

  test("a client that disconnects and resumes sees every event exactly once, in commit order", async () => {
    const counter = async () => Number((await env.sql<{ n: number }>("SELECT n FROM change_counter WHERE id = 1"))[0]!.n);
    const start = await counter();
    const first: WatchServersResponse[] = [];
    const s1 = watch(admin, start, first);

    // 40 servers created through two controllers at once, then deleted.
    const ids: string[] = [];
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const c = i % 2 ? admin : admin2;
        ids.push((await c.servers.createServer({ name: `w-${i}`, flavorId: "m1.tiny", imageId })).server!.id);
      }),
    );
    await eventually(async () => first.length >= 60, { what: "some events" });
    s1.cancel();
    const lastSeen = first[first.length - 1]!.index;

    await waitServers(admin, ids, (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE, "ACTIVE", 60_000);
    await Promise.all(ids.map((id, i) => (i % 2 ? admin : admin2).servers.deleteServer({ id })));
    await waitServers(admin, ids, (s) => s.status === ServerStatus.SERVER_STATUS_DELETED, "DELETED", 60_000);

    // Resume on the other controller, after the last index seen.
    const second: WatchServersResponse[] = [];
    const s2 = watch(admin2, lastSeen, second);
    const end = await counter();
    await eventually(async () => second.at(-1)?.index === end, { what: "caught up" });
    s2.cancel();

    const indexes = [...first.map((e) => e.index), ...second.map((e) => e.index)];
    // Exactly once and gap-free: start+1, start+2, …, end.
    assert.deepEqual(
      indexes,
      Array.from({ length: end - start }, (_, i) => start + 1 + i),
    );
    // The same events the log holds, with the same server states.
    const log = await env.sql<{ id: number; instance_uuid: string }>("SELECT id, instance_uuid FROM server_changes WHERE id > ? ORDER BY id", [start]);
    assert.deepEqual(
      [...first, ...second].map((e) => [e.index, e.server!.id]),
      log.map((r) => [Number(r.id), r.instance_uuid]),
    );
    // Every server's last event is its deletion.
    const lastOf = new Map([...first, ...second].map((e) => [e.server!.id, e.server!.status]));
    for (const id of ids) assert.equal(lastOf.get(id), ServerStatus.SERVER_STATUS_DELETED);
  });

  test("with send_initial_state the current servers come first, marked initial, then the changes after them", async () => {
    const a = (await admin.servers.createServer({ name: "init-a", flavorId: "m1.tiny", imageId })).server!;
    const b = (await admin2.servers.createServer({ name: "init-b", flavorId: "m1.tiny", imageId })).server!;
    await waitServers(admin, [a.id, b.id], (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE, "ACTIVE", 60_000);
    const live = (await admin.servers.listServers({ allProjects: true, pageSize: 1000 })).servers.map((s) => s.id).sort();
    const events: WatchServersResponse[] = [];
    const stream = watch(admin, 0, events, true);
    await eventually(async () => events.length >= live.length, { what: "the initial state" });
    const initial = events.filter((e) => e.initial);
    assert.deepEqual(initial.map((e) => e.server!.id).sort(), live, "every server that is not deleted, at once");
    assert.ok(initial.every((e) => e.server!.status !== ServerStatus.SERVER_STATUS_DELETED));
    assert.equal(new Set(initial.map((e) => e.index)).size, 1, "all at the index they were read at");
    await admin.servers.stopServer({ id: a.id });
    await eventually(async () => events.some((e) => !e.initial && e.server!.id === a.id && e.server!.status === ServerStatus.SERVER_STATUS_SHUTOFF), { what: "the stop" });
    assert.ok(events.filter((e) => !e.initial).every((e) => e.index > initial[0]!.index), "changes follow the initial state");
    stream.cancel();
  });

  test("send_initial_state with an after_index is refused, naming after_index", async () => {
    const err = await new Promise<ServiceError>((resolve) => {
      const stream = admin.servers.raw.watchServers({ afterIndex: 5, serverId: "", allProjects: true, sendInitialState: true }, admin.servers.metadata());
      stream.on("error", resolve);
      stream.on("data", () => undefined);
    });
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /after_index/);
  });
});
