import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { Metadata, credentials, type ServiceError } from "@grpc/grpc-js";
import { connect, credsAuthenticator, headers, jwtAuthenticator, nkeys, type NatsConnection } from "nats";
import { AgentServiceClient, type ConnectResponse } from "../gen/novamesh/agent/v1/agent.js";
import { ComputeOp } from "../gen/novamesh/agent/v1/ops.js";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import { PowerState, ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import type { ControllerConfig } from "../controller/config.js";
import { consumerName, opsSubject, querySubject } from "../controller/bus/subjects.js";
import { testInstance } from "../agent/drivers/test-instance.js";
import { testOp } from "../agent/ops/test-ops.js";
import { computeOpOf } from "../agent/test-compute-op.js";
import { NATS_URL, eventually } from "./harness.js";
import { startSecureNats, type SecureNatsServer } from "./secure-nats.js";
import { stack } from "./stack.js";

/** Says Hello as `host` with `token` and the public key of `key`; the HelloAck (or the status). */
async function hello(address: string, token: string, host: string, key: ReturnType<typeof nkeys.createUser>): Promise<{ ack: ConnectResponse | ServiceError; close: () => void }> {
  const client = new AgentServiceClient(address, credentials.createInsecure());
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  const call = client.connect(md);
  const ack = await new Promise<ConnectResponse | ServiceError>((resolve) => {
    call.on("data", (m: ConnectResponse) => resolve(m));
    call.on("error", (e: ServiceError) => resolve(e));
    call.write({
      body: {
        $case: "hello",
        hello: {
          host,
          hypervisorType: "fake",
          version: "test",
          capacity: { vcpus: 1, memoryMb: 1024, diskGb: 10 },
          zone: "",
          migrationUri: "",
          architecture: "",
          allocation: undefined,
          natsPublicKey: key.getPublicKey(),
          tunnelIp: "",
          volumePools: [],
        },
      },
    });
  });
  return { ack, close: () => (call.cancel(), client.close()) };
}

/** Whether NATS refuses `what` (a permissions violation) within a second. */
async function refused(nc: NatsConnection, what: (nc: NatsConnection) => Promise<unknown>): Promise<string | false> {
  try {
    await what(nc);
    return false;
  } catch (err) {
    const m = String((err as Error).message ?? err);
    return /permission|authoriz/i.test(m) ? m : `unexpected error: ${m}`;
  }
}

/** Subscribes and reports the server's refusal (it comes asynchronously). */
function subscribeRefused(nc: NatsConnection, subject: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`subscribing to ${subject} was not refused`)), 2_000);
    nc.subscribe(subject, {
      callback: (err) => {
        if (!err) return;
        clearTimeout(timer);
        if (/permissions violation/i.test(err.message)) resolve();
        else reject(err);
      },
    });
  });
}

describe("a bus that needs credentials and TLS (nats-server in operator mode)", () => {
  let nats: SecureNatsServer;
  const controller: Partial<ControllerConfig> = {};
  const hostTokens = new Map<string, string>();
  before(async () => {
    nats = await startSecureNats("secure-bus", { tls: true });
    Object.assign(controller, { natsUrl: nats.url, natsCreds: nats.creds, natsSigningKey: nats.signingKey, natsCa: nats.ca, natsAgentTtlSeconds: 10 });
  });
  const fx = stack({
    name: "secure-bus",
    controller,
    beforeAgents: async () => {
      for (const host of ["sec-a", "sec-b"]) {
        hostTokens.set(host, (await fx.admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host, description: "" })).secret);
      }
    },
  });
  after(async () => {
    await nats?.stop();
  });

  test("anonymous connections are refused, and so is a client that does not trust the server's CA", async () => {
    await assert.rejects(connect({ servers: nats.url, reconnect: false, tls: { caFile: nats.ca! } }), /Authorization Violation/);
    const creds = await readFile(nats.creds);
    await assert.rejects(connect({ servers: nats.url, reconnect: false, authenticator: credsAuthenticator(creds) }), /certificate/i);
  });

  test("agents with host tokens take ops, answer queries and keep working past their first credential's expiry", async () => {
    for (const host of ["sec-a", "sec-b"]) fx.agents.start({ host, token: hostTokens.get(host)!, nats: nats.url, natsCa: nats.ca });
    await eventually(async () => (await fx.admin.hosts.listServices({})).services.length === 2, { what: "both hosts up" });
    const first = await fx.boot("through-the-secure-bus");
    assert.ok(["sec-a", "sec-b"].includes(first.host));
    const console = await fx.admin.servers.getConsoleOutput({ id: first.id });
    assert.match(console.output, /login/, "the host answered a console query over the bus");
    // The agents' first NATS users expire after 10 s; they renew at half of that.
    await new Promise((r) => setTimeout(r, 12_000));
    const second = await fx.boot("after-renewal");
    assert.equal(second.status, ServerStatus.SERVER_STATUS_ACTIVE);
    await fx.alice.servers.stopServer({ id: first.id });
    await fx.settled(first.id, ServerStatus.SERVER_STATUS_SHUTOFF);
  });

  test("a Hello without the agent's NATS key is refused before anything is written", async () => {
    const token = (await fx.admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "sec-nokey", description: "" })).secret;
    const client = new AgentServiceClient(fx.env.address(fx.ctl), credentials.createInsecure());
    const md = new Metadata();
    md.set("authorization", `Bearer ${token}`);
    const call = client.connect(md);
    const err = await new Promise<ServiceError>((resolve) => {
      call.on("error", resolve);
      call.on("data", () => undefined);
      call.write({ body: { $case: "hello", hello: { host: "sec-nokey", hypervisorType: "fake", version: "t", capacity: { vcpus: 1, memoryMb: 1, diskGb: 1 }, zone: "", migrationUri: "", architecture: "", allocation: undefined, natsPublicKey: "", tunnelIp: "", volumePools: [] } } });
    });
    client.close();
    assert.match(err.details, /nats_public_key/);
    assert.ok(!(await fx.admin.hosts.listServices({})).services.some((s) => s.host === "sec-nokey"));
  });

  test("one host's NATS user cannot read or take another host's ops, answer its queries, publish ops or read the stream", async () => {
    const key = nkeys.createUser();
    const token = (await fx.admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "sec-rogue", description: "" })).secret;
    const { ack, close } = await hello(fx.env.address(fx.ctl), token, "sec-rogue", key);
    close();
    const helloAck = (ack as ConnectResponse).body?.$case === "helloAck" ? (ack as { body: { helloAck: import("../gen/novamesh/agent/v1/agent.js").HelloAck } }).body.helloAck : undefined;
    assert.ok(helloAck?.natsCredential?.jwt, "the HelloAck carries a NATS user JWT");
    assert.ok(helloAck.opSigningKeys.length === 1, "and the key ops are signed with");
    const nc = await connect({
      servers: nats.url,
      authenticator: jwtAuthenticator(helloAck.natsCredential.jwt, key.getSeed()),
      inboxPrefix: helloAck.inboxPrefix,
      tls: { caFile: nats.ca! },
    });
    try {
      const { opsStream, opsSubjectPrefix, imageBucket } = fx.ctl.config;
      await subscribeRefused(nc, opsSubject(opsSubjectPrefix, "sec-a"));
      await subscribeRefused(nc, `${opsSubjectPrefix}.>`);
      await subscribeRefused(nc, querySubject(opsSubjectPrefix, "sec-a"));
      await subscribeRefused(nc, "_INBOX.>");
      const js = nc.jetstream();
      for (const [what, fn] of [
        ["take sec-a's ops", () => nc.request(`$JS.API.CONSUMER.MSG.NEXT.${opsStream}.${consumerName("sec-a")}`, new TextEncoder().encode('{"batch":1}'), { timeout: 1000 })],
        ["publish an op, even to its own subject", () => js.publish(opsSubject(opsSubjectPrefix, "sec-rogue"), new Uint8Array([1]), { timeout: 1000 })],
        ["read the ops stream", () => nc.request(`$JS.API.STREAM.INFO.${opsStream}`, undefined, { timeout: 1000 })],
        ["read the image bucket", () => nc.request(`$JS.API.STREAM.INFO.OBJ_${imageBucket}`, undefined, { timeout: 1000 })],
        ["create a consumer", () => nc.request(`$JS.API.CONSUMER.CREATE.${opsStream}`, new TextEncoder().encode("{}"), { timeout: 1000 })],
      ] as const) {
        const r = await refused(nc, fn);
        assert.ok(r && !r.startsWith("unexpected"), `may not ${what}: ${r || "it was allowed"}`);
      }
    } finally {
      await nc.close();
    }
  });
});

describe("signed ops", () => {
  const fx = stack({ name: "signed-ops", agents: ({ id }) => [{ host: `signed-${id}` }] });

  test("an op that reached the bus without the controller's signature is refused by the agent, and a real one still runs", async () => {
    const host = fx.hosts[0]!;
    const server = await fx.boot("victim");
    // Anyone on the (open, in this test) bus publishes a power_off for it, unsigned and signed by a key of their own.
    const nc = await connect({ servers: NATS_URL });
    try {
      const js = nc.jetstream();
      const subject = opsSubject(fx.ctl.config.opsSubjectPrefix, host);
      const forged = testOp(testInstance({ id: server.id, projectId: server.projectId }), { kind: "power_off" });
      const data = ComputeOp.encode(computeOpOf(forged)).finish();
      await js.publish(subject, data, { msgID: forged.opId });
      const ownKey = nkeys.createOperator();
      const h = headers();
      h.set("Nm-Signing-Key", ownKey.getPublicKey());
      h.set("Nm-Signature", Buffer.from(ownKey.sign(data)).toString("base64url"));
      const forged2 = testOp(testInstance({ id: server.id, projectId: server.projectId }), { kind: "destroy" });
      await js.publish(subject, ComputeOp.encode(computeOpOf(forged2)).finish(), { msgID: forged2.opId, headers: h });
      await eventually(async () => (await readFile(`${fx.agents.dir}/${host}.log`, "utf8")).split("op without the controller's signature refused").length === 3, {
        what: "the agent's log of both refusals",
      });
    } finally {
      await nc.close();
    }
    const domains = await fx.agents.domains(host);
    assert.equal(domains[server.id]?.powerState, "RUNNING", "the guest was not touched");
    assert.deepEqual(
      (await fx.agents.calls(host)).map((c) => c.method),
      ["spawn"],
      "the driver ran only the real spawn",
    );
    await fx.alice.servers.stopServer({ id: server.id });
    const stopped = await fx.settled(server.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.equal(stopped.powerState, PowerState.POWER_STATE_SHUTDOWN);
  });
});
