/**
 * Streams that fail end with their status, seen from raw clients: a message
 * the controller cannot apply ends the agent stream with a status the agent
 * sees (so it reconnects and re-sends), never a silent stream that stays
 * open and applies nothing; a refused WatchServers says why.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { AgentServiceClient, ConnectRequest } from "../gen/novamesh/agent/v1/agent.js";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import { clients, type Clients } from "./harness.js";
import { testEnv } from "./stack.js";

/** How a stream ended within `ms`: its error, "ended" (OK), or "still open". */
function outcome(call: { on(event: string, fn: (...args: never[]) => void): unknown }, ms = 5_000): Promise<ServiceError | "ended" | "still open"> {
  return new Promise((resolve) => {
    call.on("error", (err: ServiceError) => resolve(err));
    call.on("end", () => resolve("ended"));
    call.on("data", () => undefined);
    setTimeout(() => resolve("still open"), ms).unref();
  });
}

describe("failing streams", () => {
  const env = testEnv();

  test("a message the controller refuses ends the stream with its status", async () => {
    const ctl = await env.startController();
    const client = new AgentServiceClient(env.address(ctl), credentials.createInsecure());
    const md = new Metadata();
    md.set("authorization", `Bearer ${env.adminToken}`);
    const call = client.connect(md);
    const ended = outcome(call);
    // An op result before hello: the controller cannot know whose it is.
    const bad: ConnectRequest = {
      body: { $case: "opResult", opResult: { opId: "00000000-0000-4000-8000-000000000001", serverId: "00000000-0000-4000-8000-000000000002", note: "", error: undefined, powerState: 0, startTime: undefined, finishTime: undefined, snapshot: undefined, volumeId: "", volume: undefined } },
    };
    call.write(bad);
    const got = await ended;
    call.cancel();
    client.close();
    assert.notEqual(got, "still open", "the agent must learn that its stream is over");
    assert.notEqual(got, "ended", "it ends with an error status");
    assert.equal((got as ServiceError).code, status.INVALID_ARGUMENT);
    assert.match((got as ServiceError).details, /hello/);
  });

  test("an agent stream refused for its token and then closed by its client ends with PERMISSION_DENIED, and the controller goes on", async () => {
    const ctl = await env.startController();
    const member: Clients & { token: string } = await env.as(ctl, "not-an-agent");
    const client = new AgentServiceClient(env.address(ctl), credentials.createInsecure());
    const md = new Metadata();
    md.set("authorization", `Bearer ${member.token}`);
    const call = client.connect(md);
    const ended = outcome(call);
    call.write(ConnectRequest.fromPartial({ body: { $case: "hello", hello: { host: "h", capacity: { vcpus: 1, memoryMb: 1, diskGb: 1 } } } }));
    call.end();
    const got = await ended;
    client.close();
    assert.equal((got as ServiceError).code, status.PERMISSION_DENIED, String(got));
    // Waiting for the refused stream's work must not reject unhandled (which ended the process).
    await new Promise((r) => setTimeout(r, 200));
    assert.ok((await member.flavors.listFlavors({})).flavors.length > 0);
  });

  test("a WatchServers whose token is deleted ends UNAUTHENTICATED", async () => {
    const ctl = await env.startController();
    const token = await env.admin(ctl).identity.createToken({ projectId: "watcher", role: Role.ROLE_MEMBER, description: "" });
    const member = clients(env.address(ctl), token.secret);
    const call = member.servers.raw.watchServers({ afterIndex: 0, sendInitialState: false, serverId: "", allProjects: false }, member.servers.metadata());
    const ended = outcome(call, 20_000);
    await env.admin(ctl).identity.deleteToken({ id: token.token!.id });
    const got = await ended;
    call.cancel();
    assert.equal((got as ServiceError).code, status.UNAUTHENTICATED, String(got));
  });

  test("a refused WatchServers ends with its status: a malformed server id, all projects for a member", async () => {
    const ctl = await env.startController();
    const member: Clients = await env.as(ctl, "watcher");
    const watch = (req: { serverId: string; allProjects: boolean }) => member.servers.raw.watchServers({ afterIndex: 0, sendInitialState: false, ...req }, member.servers.metadata());
    const malformed = await outcome(watch({ serverId: "not-a-uuid", allProjects: false }));
    assert.equal((malformed as ServiceError).code, status.INVALID_ARGUMENT, String(malformed));
    const everyone = await outcome(watch({ serverId: "", allProjects: true }));
    assert.equal((everyone as ServiceError).code, status.PERMISSION_DENIED, String(everyone));
  });
});
