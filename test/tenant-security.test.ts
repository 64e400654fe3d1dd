/**
 * What one tenant can learn of or do to another, and what operators can
 * see of everyone: token expiry (also on the agent stream), the configured
 * admin secret's rotation, the audit trail, opaque host ids, scheduler
 * hints and image ids scoped to the caller's project, and operations
 * listed under their server's project.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { AgentServiceClient, type ConnectResponse } from "../gen/novamesh/agent/v1/agent.js";
import { Role, TokenKind } from "../gen/novamesh/compute/v1/identity.js";
import { Image } from "../gen/novamesh/compute/v1/image.js";
import { ServerStatus, type Server, type WatchServersResponse } from "../gen/novamesh/compute/v1/server.js";
import { downloadImageFile, uploadImageFile } from "../scripts/image-files.js";
import { TestEnv, clients, eventually, failure, operationError, waitServers, type Clients } from "./harness.js";
import { stack } from "./stack.js";

const hostIdOf = (project: string, host: string) => createHash("sha224").update(project + host).digest("hex");

/** A failure as a user compares two: code, reason, and the message with `id` written as ID. */
async function refusal(p: Promise<unknown>, id: string) {
  const f = await failure(p);
  return { code: f.code, reason: f.reason, message: f.message.split(id).join("ID"), fields: f.fields };
}

/** Opens AgentService/Connect with `token` and returns how the stream ends. */
function agentStreamEnd(address: string, token: string): Promise<grpc.ServiceError> {
  const client = new AgentServiceClient(address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  const call = client.connect(md);
  return new Promise((resolve, reject) => {
    call.on("data", (m: ConnectResponse) => reject(new Error(`the stream answered: ${JSON.stringify(m.body?.$case)}`)));
    call.on("error", (err: grpc.ServiceError) => {
      client.close();
      resolve(err);
    });
  });
}

describe("tenant isolation without hosts", () => {
  const fx = stack({ name: "tenant", members: ["alice", "bob"] });
  const { env, admin, alice, bob, imageId } = fx;

  test("a token may expire: CreateToken takes a ttl or an expire_time, Token shows it, and an expired token is UNAUTHENTICATED everywhere, the agent stream too", async () => {
    const hour = await admin.identity.createToken({ projectId: "exp", role: Role.ROLE_MEMBER, expiration: { $case: "ttl", ttl: { seconds: 3600, nanos: 0 } } });
    assert.ok(hour.token!.expireTime, "the token shows when it expires");
    const left = hour.token!.expireTime!.getTime() - hour.token!.createTime!.getTime();
    assert.ok(left > 3590_000 && left <= 3600_000, `an hour from its creation (${left} ms)`);
    await clients(env.address(fx.ctl), hour.secret).servers.listServers({});

    const at = new Date(Date.now() + 7 * 86400_000);
    const week = await admin.identity.createToken({ projectId: "exp", role: Role.ROLE_MEMBER, expiration: { $case: "expireTime", expireTime: at } });
    assert.equal(week.token!.expireTime!.getTime(), at.getTime());
    const never = await admin.identity.createToken({ projectId: "exp", role: Role.ROLE_MEMBER });
    assert.equal(never.token!.expireTime, undefined, "without an expiration a token does not expire");

    const member = await admin.identity.createToken({ projectId: "exp", role: Role.ROLE_MEMBER, expiration: { $case: "ttl", ttl: { seconds: 1, nanos: 0 } } });
    const agent = await admin.identity.createToken({ projectId: "exp", role: Role.ROLE_AGENT, expiration: { $case: "ttl", ttl: { seconds: 1, nanos: 0 } } });
    const expired = clients(env.address(fx.ctl), member.secret);
    const gone = await eventually(async () => {
      const f = await failure(expired.servers.listServers({}));
      return f.code === status.UNAUTHENTICATED ? f : null;
    }, { what: "the short token to expire" });
    assert.match(gone.message, /token expired/);
    for (const call of [() => expired.images.listImages({}), () => expired.operations.listOperations({}), () => expired.servers.createServer({ name: "x", flavorId: "1", imageId })]) {
      const f = await failure(call());
      assert.deepEqual([f.code, f.message], [status.UNAUTHENTICATED, "token expired"]);
    }
    const end = await eventually(async () => {
      const e = await agentStreamEnd(env.address(fx.ctl), agent.secret);
      return e.code === status.UNAUTHENTICATED ? e : null;
    }, { what: "the agent token to expire" });
    assert.equal(end.details, "token expired");
    // Listed with their expiry, expired ones too.
    const listed = (await admin.identity.listTokens({ projectId: "exp" })).tokens;
    assert.deepEqual(listed.map((t) => t.id).sort(), [hour, week, never, member, agent].map((t) => t.token!.id).sort());
    assert.ok(listed.every((t) => t.kind === TokenKind.TOKEN_KIND_API));
  });

  test("a past, absurd or malformed expiry is INVALID_ARGUMENT naming the field", async () => {
    const create = (expiration: NonNullable<Parameters<typeof admin.identity.createToken>[0]["expiration"]>) =>
      failure(admin.identity.createToken({ projectId: "exp", role: Role.ROLE_MEMBER, expiration }));
    const cases: Array<[Awaited<ReturnType<typeof create>>, string]> = [
      [await create({ $case: "expireTime", expireTime: new Date(Date.now() - 60_000) }), "expire_time"],
      [await create({ $case: "expireTime", expireTime: new Date("9000-01-01T00:00:00Z") }), "expire_time"],
      [await create({ $case: "ttl", ttl: { seconds: 0, nanos: 0 } }), "ttl"],
      [await create({ $case: "ttl", ttl: { seconds: -5, nanos: 0 } }), "ttl"],
      [await create({ $case: "ttl", ttl: { seconds: 3651 * 86400, nanos: 0 } }), "ttl"],
      [await create({ $case: "ttl", ttl: { seconds: 1, nanos: 2_000_000_000 } }), "ttl"],
    ];
    for (const [f, field] of cases) {
      assert.equal(f.code, status.INVALID_ARGUMENT, f.message);
      assert.deepEqual(f.fields, [field]);
    }
  });

  test("an admin's action on a tenant's server is the tenant's operation: listed for the tenant, under the server's project", async () => {
    const s = (await alice.servers.createServer({ name: "ops-owner", flavorId: "m1.tiny", imageId })).server!;
    const locked = await admin.servers.lockServer({ id: s.id, requestId: "admin-lock-1", reason: "maintenance" });
    assert.equal(locked.operation!.projectId, "alice");
    const mine = (await alice.operations.listOperations({})).operations;
    const op = mine.find((o) => o.name === locked.operation!.name);
    assert.ok(op, "the tenant lists the admin's operation on its server");
    assert.deepEqual([op.action, op.projectId], ["lock", "alice"]);
    assert.equal((await alice.operations.getOperation({ name: locked.operation!.name })).operation!.projectId, "alice");
    const actions = (await alice.servers.listServerActions({ serverId: s.id })).actions;
    assert.deepEqual(actions.map((a) => [a.action, a.projectId]), [["lock", "alice"], ["create", "alice"]]);
    assert.ok(!(await admin.operations.listOperations({})).operations.some((o) => o.serverId === s.id), "not the admin project's operation");
  });

  test("another project's private image is indistinguishable from one that does not exist, on every path", async () => {
    const own = (await alice.images.registerImage({ image: Image.fromPartial({ name: "alice-private" }), upload: true })).image!;
    const X = own.id;
    const R = randomUUID();
    const mine = (await bob.servers.createServer({ name: "bob-vm", flavorId: "m1.tiny", imageId })).server!;
    const file = join(fx.dir, "tiny.img");
    await writeFile(file, Buffer.from("not a disk"));
    const paths: Array<[string, (id: string) => Promise<unknown>]> = [
      ["GetImage", (id) => bob.images.getImage({ id })],
      ["DeleteImage", (id) => bob.images.deleteImage({ id })],
      ["UploadImageData", (id) => uploadImageFile(bob.images.raw, bob.images.metadata(), id, file)],
      ["DownloadImageData", (id) => downloadImageFile(bob.images.raw, bob.images.metadata(), id, join(fx.dir, "out.img"))],
      ["CreateServer", (id) => bob.servers.createServer({ name: "probe", flavorId: "m1.tiny", imageId: id })],
      ["RebuildServer", (id) => bob.servers.rebuildServer({ id: mine.id, imageId: id })],
      ["RegisterImage with a chosen id", (id) => bob.images.registerImage({ image: Image.fromPartial({ id, name: "probe" }) })],
    ];
    for (const [what, call] of paths) {
      const other = await refusal(call(X), X);
      const none = await refusal(call(R), R);
      assert.deepEqual(other, none, `${what}: another project's image answers as a missing one`);
      assert.notEqual(other.code, status.OK);
    }
    assert.equal((await refusal(bob.images.getImage({ id: X }), X)).code, status.NOT_FOUND);
    // Members get ids assigned; admins still choose theirs (as the README does).
    const chosen = randomUUID();
    assert.equal((await admin.images.registerImage({ image: Image.fromPartial({ id: chosen, name: "admin-chosen" }) })).image!.id, chosen);
    assert.equal((await failure(admin.images.registerImage({ image: Image.fromPartial({ id: chosen, name: "again" }) }))).code, status.ALREADY_EXISTS);
    assert.ok((await alice.images.getImage({ id: X })).image, "the owner still sees it");
  });

  test("members cannot filter servers by host name", async () => {
    const f = await failure(alice.servers.listServers({ host: "any-host" }));
    assert.equal(f.code, status.PERMISSION_DENIED);
    await admin.servers.listServers({ host: "any-host", allProjects: true });
  });

  test("every mutating call is audited with its caller, target, request id and outcome, refused ones too; admins list the trail with filters and pages", async () => {
    const a = await env.as(fx.ctl, "audit-a");
    const b = await env.as(fx.ctl, "audit-b");
    const tokenOf = async (project: string) => (await admin.identity.listTokens({ projectId: project })).tokens[0]!.id;
    const [ta, tb] = [await tokenOf("audit-a"), await tokenOf("audit-b")];

    const created = (await a.servers.createServer({ name: "audited", flavorId: "m1.tiny", imageId, requestId: "audit-req-1" })).server!;
    await a.servers.getServer({ id: created.id });
    await a.servers.listServers({});
    await failure(a.flavors.createFlavor({ flavor: { id: "audit-flavor", name: "audit-flavor", vcpus: 1, ramMb: 64, diskGb: 1, description: "", extraSpecs: {} } }));
    await failure(a.servers.createServer({ name: "", flavorId: "m1.tiny", imageId }));
    await failure(b.servers.stopServer({ id: created.id, requestId: "probe-1" }));
    await failure(clients(env.address(fx.ctl), "not-a-token").servers.deleteServer({ id: created.id }));
    await admin.servers.lockServer({ id: created.id, requestId: "audit-lock" });

    const records = (await admin.audit.listAuditRecords({ projectId: "audit-a" })).records;
    assert.deepEqual(
      records.map((r) => [r.method, r.code, r.target, r.requestId, r.tokenId, r.role, r.reason]),
      [
        ["novamesh.compute.v1.ServerService/CreateServer", status.INVALID_ARGUMENT, "", "", ta, "member", "INVALID_ARGUMENT"],
        ["novamesh.compute.v1.FlavorService/CreateFlavor", status.PERMISSION_DENIED, "audit-flavor", "", ta, "member", "PERMISSION_DENIED"],
        ["novamesh.compute.v1.ServerService/CreateServer", status.OK, created.id, "audit-req-1", ta, "member", ""],
      ],
      "reads (GetServer, ListServers) are not recorded; refused and invalid calls are",
    );
    assert.ok(records.every((r) => r.time instanceof Date && r.projectId === "audit-a"));
    const probe = (await admin.audit.listAuditRecords({ tokenId: tb })).records;
    assert.deepEqual(probe.map((r) => [r.method, r.code, r.target, r.requestId, r.projectId]), [
      ["novamesh.compute.v1.ServerService/StopServer", status.NOT_FOUND, created.id, "probe-1", "audit-b"],
    ]);
    const anon = (await admin.audit.listAuditRecords({ method: "DeleteServer" })).records;
    assert.deepEqual(anon, [], "a call without a valid token is not written one by one (a flood would be a flood of inserts): the log counts them");
    const lock = (await admin.audit.listAuditRecords({ method: "novamesh.compute.v1.ServerService/LockServer" })).records.filter((r) => r.target === created.id);
    assert.deepEqual(lock.map((r) => [r.role, r.requestId, r.code]), [["admin", "audit-lock", status.OK]]);
    // Tokens issued for the test are in the trail too.
    assert.ok((await admin.audit.listAuditRecords({ method: "CreateToken" })).records.length >= 2);

    // Pages, newest first, until the last.
    const page1 = await admin.audit.listAuditRecords({ projectId: "audit-a", pageSize: 2 });
    const page2 = await admin.audit.listAuditRecords({ projectId: "audit-a", pageSize: 2, pageToken: page1.nextPageToken });
    assert.deepEqual([...page1.records, ...page2.records].map((r) => r.id), records.map((r) => r.id));
    assert.equal(page2.nextPageToken, "");
    // Time range.
    const past = new Date(Date.now() - 3600_000);
    const future = new Date(Date.now() + 3600_000);
    assert.equal((await admin.audit.listAuditRecords({ projectId: "audit-a", startTime: past, endTime: future })).records.length, 3);
    assert.equal((await admin.audit.listAuditRecords({ projectId: "audit-a", startTime: future })).records.length, 0);
    assert.equal((await admin.audit.listAuditRecords({ projectId: "audit-a", endTime: past })).records.length, 0);

    // Only admins read the trail; bad filters name their field.
    assert.equal((await failure(a.audit.listAuditRecords({ projectId: "audit-a" }))).code, status.PERMISSION_DENIED);
    for (const [req, field] of [
      [{ tokenId: "nope" }, "token_id"],
      [{ projectId: "a b" }, "project_id"],
      [{ startTime: future, endTime: past }, "end_time"],
      [{ pageToken: "garbage!" }, "page_token"],
    ] as const) {
      const f = await failure(admin.audit.listAuditRecords(req));
      assert.deepEqual([f.code, f.fields], [status.INVALID_ARGUMENT, [field]]);
    }
  });
});

describe("tenant isolation on a host", () => {
  const fx = stack({
    name: "tenant-host",
    members: ["alice", "bob"],
    controller: { taskTimeouts: "PAUSING=2", reaperIntervalSeconds: 1, reaperGraceSeconds: 0 },
    // A pause takes 8 s, longer than PAUSING's deadline: the reaper faults the server naming its host.
    agents: ({ id }) => [{ host: `tn${id}-h`, faults: { pause: { delayMs: 8000 } } }],
  });
  const { admin, alice, bob, imageId } = fx;
  const H = () => fx.hosts[0]!;
  const boot = async (c: Clients, name: string, hints: { sameHost?: string[]; differentHost?: string[] } = {}) => {
    const s = (await c.servers.createServer({ name, flavorId: "m1.tiny", imageId, schedulerHints: { group: "", sameHost: [], differentHost: [], ...hints } })).server!;
    return (await waitServers(c, [s.id], (x) => x.status === ServerStatus.SERVER_STATUS_ACTIVE || x.status === ServerStatus.SERVER_STATUS_ERROR, "built or failed"))[0]!;
  };

  test("same_host / different_host naming another project's server behave as a nonexistent server for members; admins may name any", async () => {
    const theirs = await boot(bob, "bob-anchor");
    assert.equal(theirs.status, ServerStatus.SERVER_STATUS_ACTIVE);
    const own = await boot(alice, "alice-anchor");

    const withOther = await boot(alice, "same-as-bob", { sameHost: [theirs.id] });
    const withNone = await boot(alice, "same-as-nothing", { sameHost: [randomUUID()] });
    assert.equal(withOther.status, ServerStatus.SERVER_STATUS_ERROR, "another project's server is no anchor");
    assert.deepEqual([withOther.fault?.code, withOther.fault?.message, withOther.fault?.details], [withNone.fault?.code, withNone.fault?.message, withNone.fault?.details]);
    assert.equal((await boot(alice, "same-as-own", { sameHost: [own.id] })).status, ServerStatus.SERVER_STATUS_ACTIVE, "the member's own server still is");

    // One host: different_host of a server on it leaves no host — unless the server is another project's.
    const away = await boot(alice, "away-from-bob", { differentHost: [theirs.id] });
    assert.equal(away.status, ServerStatus.SERVER_STATUS_ACTIVE, "another project's server excludes nothing");
    assert.equal((await boot(alice, "away-from-own", { differentHost: [own.id] })).status, ServerStatus.SERVER_STATUS_ERROR);

    const adminNear = await boot(admin, "admin-same-as-bob", { sameHost: [theirs.id] });
    assert.equal(adminNear.status, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(adminNear.host, H());
  });

  test("tenants see an opaque host id, never the host's name: on servers, watches, faults, operations and action events; admins see the host", async () => {
    const s = await boot(alice, "hidden-host");
    const hid = hostIdOf("alice", H());
    assert.deepEqual([s.host, s.hostId], ["", hid]);
    const asAdmin = (await admin.servers.getServer({ id: s.id })).server!;
    assert.deepEqual([asAdmin.host, asAdmin.hostId], [H(), hid]);
    const bobs = (await bob.servers.listServers({})).servers.find((x) => x.name === "bob-anchor")!;
    assert.deepEqual([bobs.host, bobs.hostId], ["", hostIdOf("bob", H())], "another project gets another id for the same host");
    assert.ok((await alice.servers.listServers({})).servers.every((x) => x.host === ""));

    const watched = await firstWatched(alice, s.id);
    assert.deepEqual([watched.host, watched.hostId], ["", hid]);

    // The pause outlives its deadline: the fault, the operation's error and the events name the host.
    const paused = await alice.servers.pauseServer({ id: s.id, requestId: "slow-pause" });
    assert.equal(paused.server!.host, "");
    const faulted = await eventually(async () => {
      const x = (await alice.servers.getServer({ id: s.id })).server!;
      return x.fault?.code === "TASK_TIMED_OUT" ? x : null;
    }, { what: "the pause to time out" });
    const adminFault = (await admin.servers.getServer({ id: s.id })).server!.fault!;
    assert.ok(adminFault.message.includes(H()) && adminFault.details.host === H(), "the admin's fault names the host");
    assert.ok(!faulted.fault!.message.includes(H()) && faulted.fault!.message.includes(hid), faulted.fault!.message);
    assert.equal(faulted.fault!.details.host, hid);

    const op = (await alice.operations.getOperation({ name: paused.operation!.name })).operation!;
    const err = operationError(op);
    assert.ok(!err.message.includes(H()) && err.message.includes(hid), err.message);
    assert.ok(!Object.values(err.metadata).includes(H()));

    const actions = (await alice.servers.listServerActions({ serverId: s.id })).actions;
    const events = actions.flatMap((a) => a.events);
    assert.ok(events.length > 0);
    for (const e of events) {
      assert.equal(e.host, "");
      assert.ok(!JSON.stringify(e).includes(H()), `event ${e.name} names no host: ${JSON.stringify(e)}`);
    }
    assert.ok(events.some((e) => e.hostId === hid));
    const adminEvents = (await admin.servers.listServerActions({ serverId: s.id })).actions.flatMap((a) => a.events);
    assert.ok(adminEvents.some((e) => e.host === H()));
  });

  test("errors a tenant reads about its server's host carry the host id, not the name", async () => {
    const s = (await alice.servers.listServers({})).servers.find((x) => x.name === "alice-anchor")!;
    await fx.agents.stop(fx.hosts[0]!);
    const f = await failure(alice.servers.getConsoleOutput({ id: s.id }));
    assert.equal(f.code, status.UNAVAILABLE);
    assert.ok(!f.message.includes(H()) && f.message.includes(hostIdOf("alice", H())), f.message);
    assert.ok(!Object.values(f.metadata).includes(H()));
    assert.ok((await failure(admin.servers.getConsoleOutput({ id: s.id }))).message.includes(H()));
  });
});

/** The first server a watch with its initial state sends. */
async function firstWatched(c: Clients, id: string): Promise<Server> {
  const stream = c.servers.raw.watchServers({ afterIndex: 0, serverId: id, allProjects: false, sendInitialState: true }, c.servers.metadata());
  try {
    return await new Promise<Server>((resolve, reject) => {
      stream.on("data", (ev: WatchServersResponse) => resolve(ev.server!));
      stream.on("error", reject);
    });
  } finally {
    stream.cancel();
  }
}

describe("the configured admin secret", () => {
  test("a controller started with a new secret revokes the previous one; tokens issued through the API stay", async () => {
    const env = new TestEnv();
    try {
      const first = await env.startController({ adminToken: "secret-A" });
      const a = clients(env.address(first), "secret-A");
      const issued = await a.identity.createToken({ projectId: "keep", role: Role.ROLE_MEMBER });
      const admin2 = await a.identity.createToken({ projectId: "ops", role: Role.ROLE_ADMIN });
      await env.stopController(first);

      const second = await env.startController({ adminToken: "secret-B" });
      const stale = await failure(clients(env.address(second), "secret-A").servers.listServers({}));
      assert.equal(stale.code, status.UNAUTHENTICATED);
      const b = clients(env.address(second), "secret-B");
      await b.servers.listServers({ allProjects: true });
      await clients(env.address(second), issued.secret).servers.listServers({});
      await clients(env.address(second), admin2.secret).identity.listTokens({});
      const kinds = (await b.identity.listTokens({})).tokens.map((t) => [t.projectId, t.kind]);
      assert.deepEqual(kinds.filter(([, k]) => k === TokenKind.TOKEN_KIND_CONFIGURATION), [["admin", TokenKind.TOKEN_KIND_CONFIGURATION]], "one configuration token");
      assert.equal(kinds.length, 3);

      // The same secret again changes nothing.
      await env.stopController(second);
      const third = await env.startController({ adminToken: "secret-B" });
      assert.equal((await clients(env.address(third), "secret-B").identity.listTokens({})).tokens.length, 3);
    } finally {
      await env.cleanup();
    }
  });
});

describe("the audit retention", () => {
  test("records older than the retention are purged; newer ones stay", async () => {
    const env = new TestEnv();
    try {
      const first = await env.startController();
      await env.as(first, "kept");
      await env.stopController(first);
      // A record from long ago.
      await env.sql("INSERT INTO audit_records (time, method, code) VALUES (CURRENT_TIMESTAMP(3) - INTERVAL 100 DAY, 'old/Call', 0)");
      const second = await env.startController({ auditRetentionDays: 30 });
      const admin = env.admin(second);
      await eventually(async () => (await admin.audit.listAuditRecords({ method: "old/Call" })).records.length === 0, { what: "the old record to be purged" });
      assert.equal((await admin.audit.listAuditRecords({ method: "CreateToken" })).records.length, 1, "records within the retention stay");
    } finally {
      await env.cleanup();
    }
  });
});
