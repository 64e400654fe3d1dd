/**
 * One request followed through the logs of the controller and an agent
 * process: every line of a create and of a stop carries its request_id, the
 * op lines their op_id, server_id and host, on both sides.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import pino from "pino";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { loggerOptions } from "../controller/log-context.js";
import { eventually, settled } from "./harness.js";
import { stack } from "./stack.js";

type Line = Record<string, unknown> & { msg: string };

describe("logs", () => {
  const controllerLines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString("utf8").split("\n")) if (l) controllerLines.push(JSON.parse(l) as Line);
      done();
    },
  });
  const fx = stack({ name: "logs", members: ["alice"], controllerLog: pino(loggerOptions({ level: "info" }), sink), agents: ({ id }) => [{ host: `lg${id}` }] });
  const agentLines = async (host: string) =>
    (await readFile(join(fx.dir, `${host}.log`), "utf8"))
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Line);

  test("a create and a stop: the controller's and the agent's lines share request_id, op_id, server_id and host", async () => {
    const { alice, imageId } = fx;
    const created = await alice.servers.createServer({ name: "logged", flavorId: "m1.small", imageId, requestId: "log-create-1" });
    const id = created.server!.id;
    await settled(alice, id, ServerStatus.SERVER_STATUS_ACTIVE);
    const active = (await fx.admin.servers.getServer({ id })).server!; // members see no host names
    await alice.servers.stopServer({ id, requestId: "log-stop-1" });
    await settled(alice, id, ServerStatus.SERVER_STATUS_SHUTOFF);

    for (const [requestId, kind, method] of [
      ["log-create-1", "spawn", "CreateServer"],
      ["log-stop-1", "power_off", "StopServer"],
    ] as const) {
      const ours = (lines: Line[]) => lines.filter((l) => l.request_id === requestId);
      // The controller: accepted, the op queued for the host, its result.
      const ctl = await eventually(async () => {
        const l = ours(controllerLines);
        return l.some((x) => x.msg === "op done") ? l : undefined;
      }, { what: `the controller's lines of ${requestId}` });
      const accepted = ctl.find((l) => l.msg === "operation accepted");
      assert.deepEqual([accepted?.method, accepted?.server_id, accepted?.operation], [method, id, `servers/${id}/operations/${requestId}`]);
      const queued = ctl.find((l) => l.msg === "op queued for its host");
      assert.deepEqual([queued?.op, queued?.server_id, queued?.host], [kind, id, active.host]);
      const opId = queued!.op_id as string;
      const done = ctl.find((l) => l.msg === "op done");
      assert.deepEqual([done?.op_id, done?.server_id, done?.host, done?.result], [opId, id, active.host, "ok"]);

      // The agent: the same op, started and finished, with the same ids and its host.
      const agent = await eventually(async () => {
        const l = ours(await agentLines(active.host));
        return l.some((x) => x.msg === "op finished") ? l : undefined;
      }, { what: `the agent's lines of ${requestId}` });
      assert.deepEqual(agent.map((l) => l.msg), ["op started", "op finished"]);
      for (const l of agent) assert.deepEqual([l.op_id, l.server_id, l.host, l.op], [opId, id, active.host, kind], JSON.stringify(l));
    }
  });
});
