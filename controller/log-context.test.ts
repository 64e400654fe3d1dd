import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import pino from "pino";
import { logContext, loggerOptions, withLogContext } from "./log-context.js";

test("lines logged inside withLogContext carry its ids, through awaits and child loggers made before; nested contexts add to the outer one", async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l));
      done();
    },
  });
  const root = pino(loggerOptions({ level: "info" }), sink);
  const driver = root.child({ driver: "libvirt" }); // made once, long before any op
  await withLogContext({ request_id: "req-1", op_id: "op-1" }, async () => {
    await new Promise((r) => setTimeout(r, 1));
    driver.info("defining the domain");
    await withLogContext({ server_id: "s-1" }, async () => driver.info({ op_id: "explicit" }, "inner"));
    assert.deepEqual(logContext(), { request_id: "req-1", op_id: "op-1" });
  });
  driver.info("outside");
  await new Promise((r) => setImmediate(r));
  const pick = (l: Record<string, unknown>) => [l.msg, l.driver, l.request_id, l.op_id, l.server_id];
  assert.deepEqual(lines.map(pick), [
    ["defining the domain", "libvirt", "req-1", "op-1", undefined],
    ["inner", "libvirt", "req-1", "explicit", "s-1"],
    ["outside", "libvirt", undefined, undefined, undefined],
  ]);
});
