/**
 * Per-token limits: a token over its rate, or holding as many streams as it
 * may, or a controller serving as many streams as it takes, is refused with
 * RESOURCE_EXHAUSTED saying when to retry (RetryInfo) and which limit
 * (QuotaFailure, ErrorInfo metadata `limit`); other tokens go on; admins
 * have their own rate (unlimited here); agent streams have a cap per token.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { credentials, Metadata, status, type ClientDuplexStream, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { AgentServiceClient, ConnectRequest, type ConnectResponse } from "../gen/novamesh/agent/v1/agent.js";
import type { WatchServersResponse } from "../gen/novamesh/compute/v1/server.js";
import { decodeStatusDetails } from "../controller/api/status.js";
import { eventually, type Clients } from "./harness.js";
import { stack } from "./stack.js";

/** A refusal's code and standard details. */
function refusal(err: ServiceError) {
  const d = decodeStatusDetails(err.metadata);
  const delay = d.retryInfo?.retryDelay;
  return {
    code: err.code,
    limit: d.errorInfo?.metadata.limit,
    retryMs: delay ? delay.seconds * 1000 + delay.nanos / 1e6 : undefined,
    subjects: d.quotaFailure?.violations.map((v) => v.subject) ?? [],
  };
}

describe("limits", () => {
  const fx = stack({
    name: "limits",
    members: [],
    controller: { rateLimit: 1, rateBurst: 5, adminRateLimit: 0, maxStreamsPerToken: 2, maxStreams: 3, maxAgentStreamsPerToken: 2 },
  });
  const { env, admin, imageId } = fx;

  /** A member token of its own project, and its id. */
  async function member(project: string): Promise<Clients & { tokenId: string }> {
    const c = await env.as(fx.ctl, project);
    const tokens = await admin.identity.listTokens({ projectId: project });
    return { ...c, tokenId: tokens.tokens[0]!.id };
  }

  test("a member token over its rate is refused with RESOURCE_EXHAUSTED, RetryInfo and QuotaFailure; other tokens and admins go on", async () => {
    const a = await member("rate-a");
    const b = await member("rate-b");
    for (let i = 0; i < 5; i++) await a.flavors.listFlavors({});
    const err = await a.flavors.listFlavors({}).then(() => null, (e: ServiceError) => e);
    assert.ok(err, "the sixth call at once is over the burst of 5");
    const r = refusal(err);
    assert.equal(r.code, status.RESOURCE_EXHAUSTED);
    assert.equal(r.limit, "rate");
    assert.deepEqual(r.subjects, [`token:${a.tokenId}`]);
    assert.ok(r.retryMs! > 0 && r.retryMs! <= 1000, `retry in ${r.retryMs} ms (one request a second)`);
    assert.match(err.details, /requests per second/);
    // Another member's token has its own bucket; admins are not limited here.
    assert.ok((await b.flavors.listFlavors({})).flavors.length > 0);
    for (let i = 0; i < 30; i++) await admin.flavors.listFlavors({});
    // After the delay it was told, the token may call again.
    await new Promise((resolve) => setTimeout(resolve, Math.ceil(r.retryMs!) + 50));
    assert.ok((await a.flavors.listFlavors({})).flavors.length > 0);
  });

  test("streams: a token holds at most its cap, the controller at most its total; a closed stream frees its place", async () => {
    const a = await member("streams-a");
    const b = await member("streams-b");
    // One server each, so that a watch with the initial state shows it was accepted by sending it.
    await a.servers.createServer({ name: "sa", flavorId: "m1.tiny", imageId });
    await b.servers.createServer({ name: "sb", flavorId: "m1.tiny", imageId });
    const open: ClientReadableStream<WatchServersResponse>[] = [];
    const watch = (c: Clients) =>
      new Promise<ServiceError | "open">((resolve) => {
        const s = c.servers.raw.watchServers({ afterIndex: 0, serverId: "", allProjects: false, sendInitialState: true }, c.servers.metadata());
        s.on("data", () => {
          open.push(s);
          resolve("open");
        });
        s.on("error", (e: ServiceError) => resolve(e));
      });
    try {
      assert.equal(await watch(a), "open");
      assert.equal(await watch(a), "open");
      const third = await watch(a);
      assert.notEqual(third, "open", "a third stream of one token is refused");
      assert.deepEqual(refusal(third as ServiceError), { code: status.RESOURCE_EXHAUSTED, limit: "streams_per_token", retryMs: 1000, subjects: [`token:${a.tokenId}`] });
      // Three streams in all is the controller's total.
      assert.equal(await watch(b), "open");
      const fourth = await watch(b);
      assert.notEqual(fourth, "open");
      assert.deepEqual(refusal(fourth as ServiceError), { code: status.RESOURCE_EXHAUSTED, limit: "streams", retryMs: 1000, subjects: ["controller"] });
      // Closing one of a's streams gives its place back.
      open.shift()!.cancel();
      await eventually(async () => (await watch(b)) === "open", { what: "a place after a stream closed" });
    } finally {
      for (const s of open) s.cancel();
    }
  });

  test("agent streams: one token holds at most its cap of AgentService/Connect streams", async () => {
    const client = new AgentServiceClient(env.address(fx.ctl), credentials.createInsecure());
    const md = () => {
      const m = new Metadata();
      m.set("authorization", `Bearer ${env.adminToken}`);
      return m;
    };
    const calls: ClientDuplexStream<ConnectRequest, ConnectResponse>[] = [];
    /** Opens a stream and says hello as `host`: resolves "acked", or the error that ended it. */
    const connect = (host: string) =>
      new Promise<"acked" | ServiceError>((resolve) => {
        const call = client.connect(md());
        calls.push(call);
        call.on("data", (m: ConnectResponse) => {
          if (m.body?.$case === "helloAck") resolve("acked");
        });
        call.on("error", (e: ServiceError) => resolve(e));
        call.write(ConnectRequest.fromPartial({ body: { $case: "hello", hello: { host, capacity: { vcpus: 4, memoryMb: 4096, diskGb: 10 } } } }));
      });
    try {
      assert.equal(await connect(`lim-a-${env.id}`), "acked");
      assert.equal(await connect(`lim-b-${env.id}`), "acked");
      const third = await connect(`lim-c-${env.id}`);
      assert.notEqual(third, "acked", "a third agent stream of one token is refused");
      assert.equal(refusal(third as ServiceError).code, status.RESOURCE_EXHAUSTED);
      assert.equal(refusal(third as ServiceError).limit, "agent_streams_per_token");
      calls[0]!.cancel();
      await eventually(async () => (await connect(`lim-d-${env.id}`)) === "acked", { what: "a place after an agent stream closed" });
    } finally {
      for (const c of calls) c.cancel();
      client.close();
    }
  });
});
