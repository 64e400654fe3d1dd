import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { currentTraceParent, inSpan, parseTraceTarget, startTracing, traceContextOf } from "./tracing.js";

test("--trace takes otlp:<http(s) URL> or file:<path>; anything else is refused naming the flag", () => {
  assert.deepEqual(parseTraceTarget("--trace", "otlp:http://127.0.0.1:4318/v1/traces"), { kind: "otlp", url: "http://127.0.0.1:4318/v1/traces" });
  assert.deepEqual(parseTraceTarget("--trace", "file:/var/log/novamesh/traces.jsonl"), { kind: "file", path: "/var/log/novamesh/traces.jsonl" });
  for (const bad of ["", "otlp:", "otlp:ftp://x", "jaeger:http://x", "file:"]) assert.throws(() => parseTraceTarget("--trace", bad), /^Error: --trace: expected otlp:/, bad);
});

test("spans go to an OTLP/HTTP collector, a stored traceparent continues its trace, and none is made before tracing starts", async () => {
  assert.equal(await inSpan("before", {}, async () => currentTraceParent()), null, "no trace context while tracing is off");
  const bodies: { path: string; type: string; body: Buffer }[] = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      bodies.push({ path: req.url ?? "", type: req.headers["content-type"] ?? "", body: Buffer.concat(chunks) });
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
  const { port } = collector.address() as AddressInfo;
  const tracing = startTracing("novamesh-test", { kind: "otlp", url: `http://127.0.0.1:${port}/v1/traces` });
  const traceId = "0af7651916cd43dd8448eb211c80319c";
  const stored = `00-${traceId}-b7ad6b7169203331-01`;
  const inner = await inSpan("schedule", { parent: traceContextOf(stored) }, async () => currentTraceParent());
  assert.match(inner ?? "", new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), "the span continues the stored trace");
  await tracing.flush();
  collector.close();
  assert.ok(bodies.length >= 1, "the collector was called");
  assert.equal(bodies[0]!.path, "/v1/traces");
  const text = bodies.map((b) => b.body.toString("latin1")).join("");
  assert.ok(text.includes("schedule") && text.includes("novamesh-test"), `the span and the service name are in the export (${bodies[0]!.type})`);
});
