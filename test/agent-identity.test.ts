import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import { status, type ServiceError } from "@grpc/grpc-js";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import type { Controller } from "../controller/controller.js";
import { hashSecret } from "../controller/store/tokens.js";
import { eventually, failure } from "./harness.js";
import { code, RawAgent } from "./raw-agent.js";
import { testEnv } from "./stack.js";

describe("agents bound to hosts", () => {
  const env = testEnv();

  async function agentToken(ctl: Controller, host: string): Promise<string> {
    return (await env.admin(ctl).identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host, description: "" })).secret;
  }

  test("a host-bound token says Hello only as its own host", async () => {
    const ctl = await env.startController();
    const token = await agentToken(ctl, "compute-a");
    const impostor = new RawAgent(env.address(ctl), token);
    const refused = await impostor.hello("compute-b");
    impostor.close();
    assert.equal(code(refused), status.PERMISSION_DENIED);
    assert.match((refused as ServiceError).details, /speaks for host "compute-a", not "compute-b"/);
    assert.deepEqual((await env.admin(ctl).hosts.listServices({})).services.map((s) => s.host), [], "no host was registered by the refused hello");

    const own = new RawAgent(env.address(ctl), token);
    assert.equal(code(await own.hello("compute-a")), "helloAck");
    own.close();
  });

  test("an enrolment token binds to the first host that uses it, and a host has one token", async () => {
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const created = await admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "", description: "rack 4" });
    assert.equal(created.token!.host, "");

    const first = new RawAgent(env.address(ctl), created.secret);
    assert.equal(code(await first.hello("compute-c")), "helloAck");
    first.close();
    const listed = (await admin.identity.listTokens({ projectId: "infra" })).tokens.find((t) => t.id === created.token!.id);
    assert.equal(listed?.host, "compute-c", "the token now names its host");

    const again = new RawAgent(env.address(ctl), created.secret);
    const elsewhere = await again.hello("compute-d");
    again.close();
    assert.equal(code(elsewhere), status.PERMISSION_DENIED, "used once, it is that host's for good");

    const second = await admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "", description: "" });
    const takeover = new RawAgent(env.address(ctl), second.secret);
    const taken = await takeover.hello("compute-c");
    takeover.close();
    assert.equal(code(taken), status.PERMISSION_DENIED, "another enrolment token cannot take an enrolled host");
    assert.match((taken as ServiceError).details, /enrolled with another agent token/);

    const dup = await failure(admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "compute-c", description: "" }));
    assert.equal(dup.code, status.ALREADY_EXISTS);

    // Deleting the host's token frees the host for a new enrolment.
    await admin.identity.deleteToken({ id: created.token!.id });
    const renewed = new RawAgent(env.address(ctl), second.secret);
    assert.equal(code(await renewed.hello("compute-c")), "helloAck");
    renewed.close();
  });

  test("an agent token from before host binding (no host, not an enrolment token) speaks for no host", async () => {
    const ctl = await env.startController();
    const secret = `legacy-${randomUUID()}`;
    await env.sql("INSERT INTO api_tokens (id, secret_hash, project_id, role, description) VALUES (?, ?, 'infra', 'agent', 'shared by every host')", [randomUUID(), hashSecret(secret)]);
    const legacy = new RawAgent(env.address(ctl), secret);
    const refused = await legacy.hello("compute-legacy");
    legacy.close();
    assert.equal(code(refused), status.PERMISSION_DENIED);
    assert.match((refused as ServiceError).details, /not an enrolment token/);
    assert.ok(!(await env.admin(ctl).hosts.listServices({})).services.some((s) => s.host === "compute-legacy"));
  });

  test("deleting a host's token ends its open stream at its next reports", async () => {
    const ctl = await env.startController();
    const created = await env.admin(ctl).identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "compute-revoked", description: "" });
    const agent = new RawAgent(env.address(ctl), created.secret);
    try {
      assert.equal(code(await agent.hello("compute-revoked")), "helloAck");
      await env.admin(ctl).identity.deleteToken({ id: created.token!.id });
      let ended: ServiceError | "ended" | undefined;
      void agent.ended.then((e) => (ended = e));
      await eventually(
        async () => {
          agent.report([]);
          return ended !== undefined;
        },
        { what: "the stream of the revoked host to end", intervalMs: 1000, timeoutMs: 20_000 },
      );
      assert.equal(code(ended!), status.UNAUTHENTICATED);
    } finally {
      agent.close();
    }
  });

  test("a host is named only on agent tokens, and well formed", async () => {
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const member = await failure(admin.identity.createToken({ projectId: "p", role: Role.ROLE_MEMBER, host: "compute-a", description: "" }));
    assert.equal(member.code, status.INVALID_ARGUMENT);
    assert.deepEqual(member.fields, ["host"]);
    const bad = await failure(admin.identity.createToken({ projectId: "p", role: Role.ROLE_AGENT, host: "no spaces", description: "" }));
    assert.equal(bad.code, status.INVALID_ARGUMENT);
    assert.deepEqual(bad.fields, ["host"]);
  });
});

describe("op results from the op's own host only", () => {
  const env = testEnv();

  test("a result for another host's op is refused and changes nothing; the op's own host finishes it", async () => {
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const a = new RawAgent(env.address(ctl), (await env.admin(ctl).identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "compute-x", description: "" })).secret);
    const b = new RawAgent(env.address(ctl), (await env.admin(ctl).identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "compute-y", description: "" })).secret);
    try {
      assert.equal(code(await a.hello("compute-x")), "helloAck");
      assert.equal(code(await b.hello("compute-y")), "helloAck");
      a.report([]);
      b.report([]);
      // Only compute-x takes the server.
      await admin.hosts.disableService({ host: "compute-y", reason: "test" });
      const image = await env.image(ctl);
      const member = await env.as(ctl, "tenant");
      const { server } = await member.servers.createServer({ name: "victim", flavorId: "m1.tiny", imageId: image });
      const op = await eventually(async () => (await env.sql<{ op_id: string; host: string }>("SELECT op_id, host FROM compute_ops WHERE instance_uuid = ? AND kind = 'spawn'", [server!.id]))[0], {
        what: "the spawn op",
      });
      assert.equal(op.host, "compute-x");

      b.result(op.op_id, server!.id);
      const ended = await b.ended;
      assert.equal(code(ended), status.PERMISSION_DENIED);
      assert.equal((await member.servers.getServer({ id: server!.id })).server!.status, ServerStatus.SERVER_STATUS_BUILD, "the forged result changed nothing");
      assert.deepEqual(await env.sql("SELECT state FROM compute_ops WHERE op_id = ?", [op.op_id]), [{ state: "PENDING" }]);

      a.result(op.op_id, server!.id);
      await eventually(async () => a.acks.includes(op.op_id), { what: "the ack of compute-x's result" });
      assert.equal((await member.servers.getServer({ id: server!.id })).server!.status, ServerStatus.SERVER_STATUS_ACTIVE);
    } finally {
      a.close();
      b.close();
    }
  });
});
