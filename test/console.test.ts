/**
 * GetConsoleOutput: the controller asks the server's host directly (NATS
 * request and reply), and says clearly when it cannot.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ServiceState } from "../gen/novamesh/compute/v1/host.js";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import { RebootType, ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { eventually, failure, settled } from "./harness.js";
import { stack } from "./stack.js";

describe("console output", () => {
  // Queries wait 10 s for an answer; a short service-down time lets the test see the host go.
  const fx = stack({
    name: "console",
    controller: { serviceDownTimeSeconds: 3 },
    members: [],
    agents: ({ id }) => [{ host: `con${id}`, capacity: null }],
  });
  const { env, admin, imageId } = fx;
  const host = `con${env.id}`;
  const up = (want: boolean) =>
    eventually(async () => (await admin.hosts.listServices({})).services.some((s) => s.host === host && s.state === ServiceState.SERVICE_STATE_UP) === want, {
      what: `host ${want ? "up" : "down"}`,
    });

  test("the last N lines of a server's console come from its host, and grow with each boot", async () => {
    const s = (await admin.servers.createServer({ name: "con-1", flavorId: "m1.tiny", imageId })).server!;
    await settled(admin, s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const all = (await admin.servers.getConsoleOutput({ id: s.id })).output;
    assert.equal(all, `novamesh fake console of con-1 (${s.id})\n[boot 1] fake kernel: 1 vCPUs, 512 MiB\n[boot 1] con-1 login:\n`);
    assert.equal((await admin.servers.getConsoleOutput({ id: s.id, length: 1 })).output, "[boot 1] con-1 login:\n");

    await admin.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_HARD });
    await eventually(async () => (await admin.servers.getConsoleOutput({ id: s.id, length: 1 })).output === "[boot 2] con-1 login:\n", {
      what: "the reboot in the console",
    });

    // Another project does not see the server at all.
    const other = await env.as(env.controllers[0]!, "other-project", Role.ROLE_MEMBER);
    assert.equal((await failure(other.servers.getConsoleOutput({ id: s.id }))).code, status.NOT_FOUND);
    const bad = await failure(admin.servers.getConsoleOutput({ id: s.id, length: -1 }));
    assert.equal(bad.code, status.INVALID_ARGUMENT);
    assert.deepEqual(bad.fields, ["length"]);
    assert.deepEqual((await failure(admin.servers.getConsoleOutput({ id: "x" }))).fields, ["id"]);
  });

  test("a server without a host has no console yet; a host whose agent is gone is UNAVAILABLE at once, not after a timeout", async () => {
    const noHost = (await admin.servers.createServer({ name: "con-shelved", flavorId: "m1.tiny", imageId })).server!;
    await settled(admin, noHost.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await admin.servers.shelveServer({ id: noHost.id });
    await settled(admin, noHost.id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    const shelved = await failure(admin.servers.getConsoleOutput({ id: noHost.id }));
    assert.equal(shelved.code, status.FAILED_PRECONDITION);
    assert.equal(shelved.reason, "INSTANCE_NOT_READY");

    const s = (await admin.servers.createServer({ name: "con-2", flavorId: "m1.tiny", imageId })).server!;
    await settled(admin, s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await fx.agents.stop(host);
    const started = Date.now();
    const gone = await failure(admin.servers.getConsoleOutput({ id: s.id }));
    assert.equal(gone.code, status.UNAVAILABLE);
    assert.equal(gone.reason, "HOST_UNREACHABLE");
    assert.match(gone.message, /not connected/);
    assert.ok(Date.now() - started < 5_000, "no responder fails at once");

    // An agent that is there but does not answer in time.
    await up(false);
    fx.agents.restart(host, { faults: { consoleOutput: { delayMs: 15_000 } } });
    await up(true);
    // The host is up from its Hello; it answers queries once it has subscribed to the subject HelloAck names.
    const slow = await eventually(
      async () => {
        const f = await failure(admin.servers.getConsoleOutput({ id: s.id }));
        return /not connected/.test(f.message) ? false : f;
      },
      { what: "the restarted agent subscribed to queries", timeoutMs: 30_000 },
    );
    assert.equal(slow.code, status.UNAVAILABLE);
    assert.match(slow.message, /did not answer within 10 s/);
  });
});
