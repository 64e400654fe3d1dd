import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { pino } from "pino";
import { bestEffort } from "./best-effort.js";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "debug" }, sink), lines };
}

test("a failed best-effort step is logged with what was tried, the error and its context, and the caller goes on", async () => {
  const { log, lines } = capture();
  const result = await bestEffort(log, "removing the half-made instance", () => Promise.reject(new Error("disk busy")), { instance: "i-1" });
  assert.equal(result, undefined);
  await new Promise((r) => setImmediate(r));
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.level, 40, "a warning");
  assert.equal(lines[0]!.msg, "removing the half-made instance failed; going on");
  assert.equal(lines[0]!.instance, "i-1");
  assert.equal((lines[0]!.err as { message: string }).message, "disk busy");
});

test("a best-effort step that works returns its value and logs nothing", async () => {
  const { log, lines } = capture();
  assert.equal(await bestEffort(log, "pruning", () => 7), 7);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(lines, []);
});
