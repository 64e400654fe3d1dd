import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import type { Driver } from "../drivers/driver.js";
import { ResourceReporter } from "./resource-reporter.js";

/** A driver whose report() takes `ms` and counts its calls. */
function slowDriver(ms: number) {
  const calls = { n: 0 };
  const driver = {
    capacity: async () => ({ vcpus: 1, memoryMb: 1024, diskGb: 10 }),
    report: async () => {
      calls.n++;
      await sleep(ms);
      return { freeMemoryMb: 1024, freeDiskGb: 10, instances: [] };
    },
  } as unknown as Driver;
  return { driver, calls };
}

test("reportSoon folds a burst of changes into one report, and reports again after one taken meanwhile", async () => {
  const { driver, calls } = slowDriver(50);
  const sent: unknown[] = [];
  const r = new ResourceReporter(driver, (x) => sent.push(x), pino({ level: "silent" }));
  r.reportSoon(10);
  await sleep(50);
  assert.equal(calls.n, 0, "not before start");
  r.start(3600);
  await sleep(80);
  assert.equal(calls.n, 1, "the first report at start");
  for (let i = 0; i < 5; i++) r.reportSoon(20);
  await sleep(120);
  assert.equal(calls.n, 2, "five changes, one report");
  // A change while a report is being taken: that report may have read the old state, so one more follows.
  void r.reportNow();
  await sleep(10);
  r.reportSoon(10);
  await sleep(200);
  assert.equal(calls.n, 4);
  assert.equal(sent.length, 4);
  r.stop();
  r.reportSoon(10);
  await sleep(50);
  assert.equal(calls.n, 4, "nothing after stop");
});
