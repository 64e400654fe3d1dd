/**
 * With tracing on (`--trace file:…` on the controller and the agent), one
 * create is one trace: the caller's traceparent is continued by the API
 * call's span, the scheduler's, the outbox's publish, the agent's op and
 * its driver call (the context crossing NATS in the message header), and
 * the controller's applying of the result.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { CreateServerRequest, ServerStatus, type CreateServerResponse } from "../gen/novamesh/compute/v1/server.js";
import { eventually, settled } from "./harness.js";
import { stack } from "./stack.js";

type SpanLine = { trace_id: string; span_id: string; parent_span_id: string; name: string; kind: string; service: string; attributes: Record<string, unknown> };

describe("traces", () => {
  const files = { controller: join(tmpdir(), `novamesh-trace-ctl-${process.pid}.jsonl`), agent: join(tmpdir(), `novamesh-trace-agent-${process.pid}.jsonl`) };
  const fx = stack({
    name: "traces",
    members: ["alice"],
    controller: { trace: `file:${files.controller}` },
    agents: ({ id }) => [{ host: `tr${id}`, extraArgs: ["--trace", `file:${files.agent}`] }],
  });
  after(async () => {
    for (const f of Object.values(files)) await rm(f, { force: true });
  });
  const spansOf = async (file: string, traceId: string) =>
    (await readFile(file, "utf8").catch(() => ""))
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as SpanLine)
      .filter((s) => s.trace_id === traceId);

  test("one create, one trace: API, scheduler, outbox, agent op and driver spans, then the result, each the child of the one before", async () => {
    const { alice, imageId } = fx;
    const traceId = randomBytes(16).toString("hex");
    const callerSpan = randomBytes(8).toString("hex");
    const md = alice.servers.metadata();
    md.set("traceparent", `00-${traceId}-${callerSpan}-01`);
    const created = await new Promise<CreateServerResponse>((resolve, reject) =>
      alice.servers.raw.createServer(CreateServerRequest.fromPartial({ name: "traced", flavorId: "m1.small", imageId, requestId: "traced-1" }), md, (err: grpc.ServiceError | null, res?: CreateServerResponse) =>
        err ? reject(err) : resolve(res!),
      ),
    );
    await settled(alice, created.server!.id, ServerStatus.SERVER_STATUS_ACTIVE);

    const { controller, agent } = await eventually(
      async () => {
        const c = await spansOf(files.controller, traceId);
        const a = await spansOf(files.agent, traceId);
        return c.some((s) => s.name === "result spawn") && a.some((s) => s.name === "driver spawn") ? { controller: c, agent: a } : undefined;
      },
      { what: "the create's spans in both files", timeoutMs: 20_000 },
    );
    const one = (spans: SpanLine[], name: string) => {
      const found = spans.filter((s) => s.name === name);
      assert.equal(found.length, 1, `one ${name} span: ${JSON.stringify(spans.map((s) => s.name))}`);
      return found[0]!;
    };
    const rpc = one(controller, "rpc CreateServer");
    const schedule = one(controller, "schedule");
    const publish = one(controller, "publish op");
    const op = one(agent, "op spawn");
    const driver = one(agent, "driver spawn");
    const result = one(controller, "result spawn");
    assert.deepEqual(
      [rpc, schedule, publish, op, driver, result].map((s) => [s.name, s.parent_span_id]),
      [
        ["rpc CreateServer", callerSpan],
        ["schedule", rpc.span_id],
        ["publish op", schedule.span_id],
        ["op spawn", publish.span_id],
        ["driver spawn", op.span_id],
        ["result spawn", schedule.span_id],
      ],
    );
    assert.deepEqual([rpc.service, op.service, rpc.kind, publish.kind, op.kind], ["novamesh-controller", "novamesh-agent", "SERVER", "PRODUCER", "CONSUMER"]);
    assert.equal(schedule.attributes["novamesh.server_id"], created.server!.id);
    assert.equal(op.attributes["novamesh.host"], fx.hosts[0]);
  });
});
