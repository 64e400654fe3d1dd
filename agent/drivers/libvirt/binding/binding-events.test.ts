/**
 * The binding's lifecycle events and its hold on the process, against
 * libvirt's test driver: events for define, start, pause, resume, stop,
 * save and undefine, per connection; a process exits once its
 * connections with listeners are closed. Skipped without the addon, as
 * binding.test.ts.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import {
  ADDON_PATH,
  type LibvirtBinding,
  type LifecycleEvent,
  VIR_DOMAIN_EVENT_DEFINED,
  VIR_DOMAIN_EVENT_DEFINED_ADDED,
  VIR_DOMAIN_EVENT_RESUMED,
  VIR_DOMAIN_EVENT_RESUMED_UNPAUSED,
  VIR_DOMAIN_EVENT_STARTED,
  VIR_DOMAIN_EVENT_STARTED_BOOTED,
  VIR_DOMAIN_EVENT_STOPPED,
  VIR_DOMAIN_EVENT_STOPPED_DESTROYED,
  VIR_DOMAIN_EVENT_STOPPED_SAVED,
  VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN,
  VIR_DOMAIN_EVENT_SUSPENDED,
  VIR_DOMAIN_EVENT_SUSPENDED_PAUSED,
  VIR_DOMAIN_EVENT_UNDEFINED,
  VIR_DOMAIN_EVENT_UNDEFINED_REMOVED,
  VIR_DOMAIN_UNDEFINE_MANAGED_SAVE,
} from "./index.js";
import { binding, scratch, type Scratch, skip, domainXml, uniqueName, sleep, waitFor } from "./test-kit.js";

describe("libvirt binding: events and exit", { skip }, () => {
  let lv: LibvirtBinding;
  let s: Scratch;
  before(() => {
    lv = binding();
    s = scratch();
  });
  after(() => s.remove());

  describe("lifecycle events", () => {
    it("arrive for define, start, pause, resume, stop, save and undefine on test:///default", async () => {
      const conn = await lv.open("test:///default");
      const events: LifecycleEvent[] = [];
      const name = uniqueName("events");
      const id = await conn.registerLifecycleEvents((ev) => {
        if (ev.domainName === name) events.push(ev);
      });
      assert.equal(typeof id, "number");
      try {
        const dom = await conn.defineXML(domainXml(name));
        await dom.create();
        await dom.suspend();
        await dom.resume();
        await dom.shutdown();
        await dom.create();
        await dom.destroy();
        await dom.create();
        await dom.managedSave();
        await dom.undefineFlags(VIR_DOMAIN_UNDEFINE_MANAGED_SAVE);
        const expected: Array<[number, number]> = [
          [VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_ADDED],
          [VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED],
          [VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED],
          [VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_UNPAUSED],
          [VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN],
          [VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED],
          [VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED],
          [VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED],
          [VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_SAVED],
          [VIR_DOMAIN_EVENT_UNDEFINED, VIR_DOMAIN_EVENT_UNDEFINED_REMOVED],
        ];
        await waitFor(() => events.length >= expected.length, `${expected.length} events (have ${events.length})`);
        assert.deepEqual(
          events.map((e) => [e.event, e.detail]),
          expected,
        );
        assert.ok(events.every((e) => /^[0-9a-f-]{36}$/.test(e.domainUUID)));

        // Deregistered: no more events.
        assert.equal(await conn.deregisterEvent(id), true);
        assert.equal(await conn.deregisterEvent(id), false);
        const before = events.length;
        const again = await conn.defineXML(domainXml(name));
        await again.undefine();
        await sleep(50);
        assert.equal(events.length, before);
      } finally {
        await conn.close();
      }
    });

    it("two connections each get their own events; close() releases listeners", async () => {
      const a = await lv.open("test:///default");
      const b = await lv.open("test:///default");
      const name = uniqueName("two");
      const seenA: number[] = [];
      const seenB: number[] = [];
      await a.registerLifecycleEvents((ev) => ev.domainName === name && seenA.push(ev.event));
      await b.registerLifecycleEvents((ev) => ev.domainName === name && seenB.push(ev.event));
      const dom = await a.defineXML(domainXml(name));
      await waitFor(() => seenA.length === 1 && seenB.length === 1, "one event each");
      await b.close();
      await dom.undefine();
      await waitFor(() => seenA.length === 2, "the undefine event on a");
      await sleep(30);
      assert.deepEqual(seenB, [VIR_DOMAIN_EVENT_DEFINED]);
      await a.close();
    });
  });

  describe("process exit", () => {
    // Child processes load the addon directly and must exit on their own:
    // neither the event loop thread nor released listeners keep Node alive.
    function runChild(body: string): { status: number | null; stdout: string; stderr: string; ms: number } {
      const script = path.join(s.dir, `${uniqueName("child")}.cjs`);
      fs.writeFileSync(
        script,
        `const lv = require(${JSON.stringify(ADDON_PATH)});\n(async () => {\n${body}\n})().catch((e) => { console.error(e); process.exit(2); });\n`,
      );
      const start = Date.now();
      const r = spawnSync(process.execPath, [script], { encoding: "utf8", timeout: 15000 });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - start };
    }

    it("exits after connections with listeners are closed", () => {
      const r = runChild(`
        const c = await lv.open("test:///default");
        await c.registerLifecycleEvents(() => {});
        await c.registerCloseCallback(() => {});
        const d = await c.lookupDomainByName("test");
        await d.destroy(); await d.create();
        await c.close();
        console.log("done", lv.eventLoopRunning());
      `);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), "done true");
    });

    it("exits with a connection left open (no listeners), and after shutdownEventLoop()", () => {
      const r = runChild(`
        const c = await lv.open("test:///default");
        await c.getHostname();
        const c2 = await lv.open("test:///default");
        await c2.close();
        console.log(lv.shutdownEventLoop(), lv.eventLoopRunning());
        const c3 = await lv.open("test:///default");   // restarts the loop
        console.log(lv.eventLoopRunning());
        await c3.close();
      `);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), "true false\ntrue");
    });
  });
});
