/**
 * WatchServers streams share one change feed per controller: the change
 * log is read once per wake however many streams are open, and a stream
 * whose client stops reading is ended with ABORTED (the index to resume
 * after in its details) instead of holding the others up or growing
 * without bound; resuming from there misses nothing.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { VmState, type WatchServersResponse } from "../gen/novamesh/compute/v1/server.js";
import { decodeStatusDetails } from "../controller/api/status.js";
import { eventually } from "./harness.js";
import { stack } from "./stack.js";

const BUFFER = 10;

describe("the change feed", () => {
  // No agents: a server goes BUILDING, then ERROR (no host), two changes each.
  // The feed polls rarely here, so only this controller's commits wake it.
  const fx = stack({ name: "feed", members: [], controller: { watchPollMs: 60_000, watchBuffer: BUFFER, maxStreamsPerToken: 500, maxStreams: 1000 } });
  const { env, admin, imageId } = fx;
  const counter = async () => Number((await env.sql<{ n: number }>("SELECT n FROM change_counter WHERE id = 1"))[0]!.n);

  interface Watch {
    stream: ClientReadableStream<WatchServersResponse>;
    events: WatchServersResponse[];
    ended: Promise<ServiceError>;
  }
  function watch(afterIndex: number): Watch {
    const events: WatchServersResponse[] = [];
    const stream = admin.servers.raw.watchServers({ afterIndex, serverId: "", allProjects: true, sendInitialState: false }, admin.servers.metadata());
    stream.on("data", (e: WatchServersResponse) => events.push(e));
    const ended = new Promise<ServiceError>((resolve) => stream.on("error", resolve));
    return { stream, events, ended };
  }

  /** Opens `n` watches, creates a server and waits until each saw it fail; the change log reads that took. */
  async function round(n: number): Promise<number> {
    const from = await counter();
    const watches = Array.from({ length: n }, () => watch(from));
    try {
      await eventually(async () => fx.ctl.feed.watches === n, { what: `${n} watches open` });
      const before = fx.ctl.feed.stats.changeLogReads;
      const id = (await admin.servers.createServer({ name: `feed-${n}`, flavorId: "m1.tiny", imageId })).server!.id;
      await eventually(async () => watches.every((w) => w.events.some((e) => e.server!.id === id && e.server!.vmState === VmState.VM_STATE_ERROR)), {
        what: `every one of ${n} watches to see the server fail`,
        timeoutMs: 60_000,
      });
      return fx.ctl.feed.stats.changeLogReads - before;
    } finally {
      for (const w of watches) w.stream.cancel();
      await eventually(async () => fx.ctl.feed.watches === 0, { what: "the watches to close" });
    }
  }

  test("200 open watches read the change log no more often than one", async () => {
    const one = await round(1);
    const many = await round(200);
    console.log(`change log reads for one server's changes: ${one} with 1 watch, ${many} with 200 watches`);
    // One read per wake (a commit), whatever the number of watches; polling per stream read at least once each.
    assert.ok(many <= one + 2, `${many} reads with 200 watches, ${one} with one`);
    assert.ok(many < 10, `${many} reads`);
  });

  test("a watch whose client reads nothing ends with ABORTED and where to resume, without holding the others up; resuming misses nothing", async () => {
    const start = await counter();
    const fast = watch(start);
    const slow = watch(start);
    slow.stream.pause();
    await eventually(async () => fx.ctl.feed.watches === 2, { what: "two watches open" });
    // Far more changes than the slow client's transport and its buffer of 10 hold.
    for (let i = 0; i < 150; i++) await admin.servers.createServer({ name: `slow-${i}`, flavorId: "m1.tiny", imageId });
    await eventually(async () => (await admin.servers.listServers({ allProjects: true, pageSize: 1000 })).servers.filter((s) => s.name.startsWith("slow-") && s.vmState === VmState.VM_STATE_ERROR).length === 150, {
      what: "every server to fail (no host)",
      timeoutMs: 60_000,
    });
    const end = await counter();
    // The other watch got every change while the slow one read nothing,
    await eventually(async () => fast.events.at(-1)?.index === end, { what: "the fast watch to catch up", timeoutMs: 30_000 });
    // and the slow one was let go (its waiting changes dropped).
    await eventually(async () => fx.ctl.feed.watches === 1, { what: "the slow watch to be ended" });

    slow.stream.resume();
    const err = await slow.ended;
    assert.equal(err.code, status.ABORTED);
    const info = decodeStatusDetails(err.metadata).errorInfo;
    assert.equal(info?.reason, "WATCH_FELL_BEHIND");
    const resumeAt = Number(info?.metadata.resume_after_index);
    assert.ok(slow.events.length < end - start, `the slow watch got ${slow.events.length} of ${end - start} changes before it ended`);
    assert.equal(slow.events.at(-1)?.index ?? start, resumeAt, "the index to resume after is the last one sent");
    assert.match(err.details, /after_index/);

    // Resuming after it gives the rest, exactly once and in order.
    const rest = watch(resumeAt);
    await eventually(async () => rest.events.at(-1)?.index === end, { what: "the resumed watch to catch up", timeoutMs: 30_000 });
    rest.stream.cancel();
    fast.stream.cancel();
    const all = [...slow.events, ...rest.events].map((e) => e.index);
    assert.deepEqual(all, Array.from({ length: end - start }, (_, i) => start + 1 + i));
    assert.deepEqual(all, fast.events.map((e) => e.index));
  });
});
