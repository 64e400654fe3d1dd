/**
 * Bad input is the caller's error, never INTERNAL: bytes that are not the
 * request message, an int64 beyond what a number holds, a forged page token
 * with an overflowing number, a Hello field longer than its column, and an
 * error that would echo a huge id (cut short).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Client, credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { AgentServiceClient, ConnectRequest } from "../gen/novamesh/agent/v1/agent.js";
import { decodeStatusDetails } from "../controller/api/status.js";
import { failure } from "./harness.js";
import { testEnv } from "./stack.js";

/** A varint, as protobuf writes one. */
function varint(n: bigint): number[] {
  const out: number[] = [];
  do {
    let b = Number(n & 0x7fn);
    n >>= 7n;
    if (n > 0n) b |= 0x80;
    out.push(b);
  } while (n > 0n);
  return out;
}

/** Calls a unary method with raw request bytes; resolves the error (or null on success). */
function rawUnary(address: string, path: string, body: Buffer, token: string | null): Promise<ServiceError | null> {
  const client = new Client(address, credentials.createInsecure());
  const md = new Metadata();
  if (token) md.set("authorization", `Bearer ${token}`);
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, md, (err) => {
      client.close();
      resolve(err ?? null);
    });
  });
}

describe("bad input", () => {
  const env = testEnv();

  test("bytes that are not the request are INVALID_ARGUMENT (UNAUTHENTICATED without a token), never INTERNAL", async () => {
    const ctl = await env.startController();
    const address = env.address(ctl);
    // A field 1 of wire type 2 whose length runs past the end of the message.
    const garbage = Buffer.from([0x0a, 0x7f, 0x41, 0x42]);
    for (const path of ["/novamesh.compute.v1.ServerService/GetServer", "/novamesh.compute.v1.FlavorService/ListFlavors", "/novamesh.compute.v1.IdentityService/CreateToken"]) {
      const err = await rawUnary(address, path, garbage, env.adminToken);
      assert.equal(err?.code, status.INVALID_ARGUMENT, `${path}: ${err?.details}`);
      assert.deepEqual(decodeStatusDetails(err!.metadata).badRequest?.fieldViolations.map((v) => v.field), ["request"]);
      const anonymous = await rawUnary(address, path, garbage, null);
      assert.equal(anonymous?.code, status.UNAUTHENTICATED, path);
    }
    // WatchServers.after_index (uint64) = 2^60: more than a number holds exactly.
    const huge = Buffer.from([0x08, ...varint(2n ** 60n)]);
    const admin = env.admin(ctl);
    const err = await new Promise<ServiceError>((resolve) => {
      const client = new Client(address, credentials.createInsecure());
      const stream = client.makeServerStreamRequest("/novamesh.compute.v1.ServerService/WatchServers", (b: Buffer) => b, (b: Buffer) => b, huge, admin.servers.metadata());
      stream.on("error", (e: ServiceError) => {
        client.close();
        resolve(e);
      });
      stream.on("data", () => undefined);
    });
    assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
  });

  test("a forged page token with an overflowing number is INVALID_ARGUMENT naming page_token", async () => {
    const ctl = await env.startController();
    const token = Buffer.from('{"before":1e400}').toString("base64url");
    const f = await failure(env.admin(ctl).servers.listServers({ pageToken: token }));
    assert.equal(f.code, status.INVALID_ARGUMENT);
    assert.deepEqual(f.fields, ["page_token"]);
  });

  test("a Hello field longer than its column is INVALID_ARGUMENT naming it", async () => {
    const ctl = await env.startController();
    const client = new AgentServiceClient(env.address(ctl), credentials.createInsecure());
    const md = new Metadata();
    md.set("authorization", `Bearer ${env.adminToken}`);
    const call = client.connect(md);
    const ended = new Promise<ServiceError>((resolve) => call.on("error", resolve));
    call.on("data", () => undefined);
    call.write(
      ConnectRequest.fromPartial({
        body: { $case: "hello", hello: { host: `long${env.id}`, version: "v".repeat(65), capacity: { vcpus: 4, memoryMb: 4096, diskGb: 10 } } },
      }),
    );
    const err = await ended;
    client.close();
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.deepEqual(decodeStatusDetails(err.metadata).badRequest?.fieldViolations.map((v) => v.field), ["hello.version"]);
    assert.equal((await env.admin(ctl).hosts.listServices({})).services.length, 0, "no host was registered");
  });

  test("an agent's report with a time no database column holds ends its stream with INVALID_ARGUMENT naming report.time", async () => {
    const ctl = await env.startController();
    const client = new AgentServiceClient(env.address(ctl), credentials.createInsecure());
    const md = new Metadata();
    md.set("authorization", `Bearer ${env.adminToken}`);
    const call = client.connect(md);
    const ended = new Promise<ServiceError>((resolve) => call.on("error", resolve));
    const acked = new Promise<void>((resolve) => call.on("data", () => resolve()));
    call.write(ConnectRequest.fromPartial({ body: { $case: "hello", hello: { host: `time${env.id}`, capacity: { vcpus: 4, memoryMb: 4096, diskGb: 10 } } } }));
    await acked;
    call.write(ConnectRequest.fromPartial({ body: { $case: "report", report: { time: new Date(Date.UTC(10000, 0, 1)), capacity: { vcpus: 4, memoryMb: 4096, diskGb: 10 } } } }));
    const err = await ended;
    client.close();
    assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
    assert.deepEqual(decodeStatusDetails(err.metadata).badRequest?.fieldViolations.map((v) => v.field), ["report.time"]);
  });

  test("an error never echoes input of any length: a 32,000-character flavor id is answered with a message cut short", async () => {
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const f = await failure(admin.flavors.getFlavor({ id: "x".repeat(32_000) }));
    assert.notEqual(f.code, status.INTERNAL);
    assert.ok(f.message.length < 1200, `message of ${f.message.length} characters`);
    assert.match(f.message, /more characters\)/);
    // The connection is still good for the next call.
    assert.ok((await admin.flavors.listFlavors({})).flavors.length > 0);
  });
});
