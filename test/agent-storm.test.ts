/**
 * A reconnect storm: 200 agents say Hello at once to a controller that
 * takes two at a time with ten waiting. The rest are refused with
 * CONTROLLER_BUSY and a retry delay, come back when told, and every host is
 * UP; the controller answers throughout and schedules on them afterwards.
 * (npm run bench starts 5,000 at once against the default 32 and 1,000.)
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { stack } from "./stack.js";

const HOSTS = 200;

describe("a reconnect storm of 200 agents", () => {
  const fx = stack({
    name: "agent-storm",
    members: ["alice"],
    // Reports every 5 s: 200 hosts stay UP (30 s) while the suite runs on a loaded machine.
    controller: { agentHelloConcurrency: 2, agentHelloQueue: 10, reportIntervalSeconds: 5, serviceDownTimeSeconds: 30 },
    agents: ({ id }) => [{ host: `st${id}`, hosts: HOSTS }],
  });

  test("busy Hellos are refused with a retry delay, the agents come back when told, and every host is UP", async () => {
    // The stack waited for all 200 to be UP; some Hellos had been refused on the way.
    const refused = (await fx.ctl.metrics!.hellosRefused.get()).values[0]?.value ?? 0;
    assert.ok(refused > 0, "no Hello was refused: the storm did not test the admission");
    const up = (await fx.admin.hosts.listServices({})).services.filter((s) => s.host.startsWith("st"));
    assert.equal(up.length, HOSTS);
    // The agents were told when to come back, and waited at least that long.
    const log = await readFile(join(fx.dir, `${fx.hosts[0]!.replace(/-\d+$/, "")}.log`), "utf8");
    const told = [...log.matchAll(/"error":"[^"]*the controller is busy with other agent hellos; retry in (\d+) ms".*?"retry_in_ms":(\d+)/g)];
    assert.ok(told.length > 0, "no agent logged the controller's retry delay");
    for (const [, asked, waited] of told) assert.ok(Number(waited) >= Number(asked), `asked to wait ${asked} ms, waited ${waited} ms`);
    assert.equal((await fx.ctl.metrics!.unhandledRejections.get()).values[0]?.value ?? 0, 0);
  });

  test("the controller schedules on the hosts that came back", async () => {
    const s = await fx.boot("after-the-storm", "m1.tiny");
    assert.equal(s.status, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.ok(fx.hosts.includes(s.host));
  });
});
