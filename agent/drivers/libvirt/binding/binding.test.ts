/**
 * Tests of the libvirt binding against libvirt's built-in test driver:
 * `test:///default` (one shared in-process host with a running domain
 * "test") and `test:///<file>` (a private host described by a node XML file,
 * so capacity is ours to choose). Needs the addon built
 * (`npm run build:libvirt`); without it the suite is skipped, or fails when
 * LIBVIRT_BINDING_REQUIRED=1 (set that in CI).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import {
  ALL_CONSTANTS,
  type LibvirtBinding,
  type LibvirtConnection,
  VIR_DOMAIN_RUNNING,
  VIR_DOMAIN_RUNNING_UNKNOWN,
  VIR_DOMAIN_SHUTOFF,
  VIR_ERR_INTERNAL_ERROR,
  VIR_ERR_INVALID_ARG,
  VIR_ERR_INVALID_CONN,
  VIR_ERR_INVALID_DOMAIN,
  VIR_ERR_NO_DOMAIN,
  VIR_ERR_NO_SUPPORT,
  VIR_ERR_OPERATION_DENIED,
  VIR_ERR_OPERATION_INVALID,
  VIR_ERR_XML_DETAIL,
  VIR_ERR_XML_ERROR,
  VIR_FROM_DOMAIN,
  VIR_FROM_NONE,
  VIR_FROM_TEST,
  VIR_FROM_URI,
  isLibvirtError,
  openFlags,
} from "./index.js";
import { binding, scratch, type Scratch, NODE_XML, skip, domainXml, rejectsWith, uniqueName, sleep } from "./test-kit.js";

describe("libvirt binding", { skip }, () => {
  let lv: LibvirtBinding;
  let s: Scratch;
  before(() => {
    lv = binding();
    s = scratch();
  });
  after(() => s.remove());

  /** A private test host (each open of a file URI is its own host). */
  const openNode = (): Promise<LibvirtConnection> => lv.open(s.nodeUri);

  it("exports the C headers' constants", () => {
    for (const [name, value] of Object.entries(ALL_CONSTANTS)) {
      assert.equal(lv.constants[name], value, name);
    }
    assert.equal(VIR_ERR_NO_DOMAIN, 42);
    assert.equal(VIR_FROM_TEST, 12);
    assert.equal(VIR_DOMAIN_RUNNING, 1);
    assert.equal(VIR_DOMAIN_SHUTOFF, 5);
  });

  describe("connection", () => {
    it("opens, answers and closes test:///default", async () => {
      const conn = await lv.open("test:///default");
      try {
        assert.equal(conn.isClosed(), false);
        assert.equal(await conn.isAlive(), true);
        assert.equal(await conn.getURI(), "test:///default");
        assert.equal(typeof (await conn.getHostname()), "string");
        const libVersion = await conn.getLibVersion();
        assert.ok(libVersion >= 9_000_000, `libvirt ${libVersion}`);
        assert.equal(await lv.getVersion(), libVersion);
        assert.equal(await conn.getVersion(), 2); // the test hypervisor says 0.0.2
        assert.match(await conn.getCapabilities(), /<capabilities>[\s\S]*<host>/);
      } finally {
        assert.equal(await conn.close(), 0);
      }
      assert.equal(conn.isClosed(), true);
      assert.equal(await conn.close(), 0, "a second close is a no-op");
    });

    it("opens read-only: reads work, writes are denied", async () => {
      const conn = await lv.open("test:///default", openFlags({ readOnly: true }));
      try {
        assert.ok((await conn.listAllDomains()).length >= 1);
        await rejectsWith(conn.defineXML(domainXml(uniqueName("ro"))), {
          code: VIR_ERR_OPERATION_DENIED,
          codeName: "VIR_ERR_OPERATION_DENIED",
          domain: VIR_FROM_DOMAIN,
        });
      } finally {
        await conn.close();
      }
    });

    it("reports the default test host's node info", async () => {
      const conn = await lv.open("test:///default");
      try {
        assert.deepEqual(await conn.getNodeInfo(), {
          model: "i686",
          memoryKiB: 3145728,
          cpus: 16,
          mhz: 1400,
          nodes: 2,
          sockets: 2,
          cores: 2,
          threads: 2,
        });
      } finally {
        await conn.close();
      }
    });

    it("reports the capacity of a custom test host file", async () => {
      const conn = await openNode();
      try {
        assert.deepEqual(await conn.getNodeInfo(), {
          model: "x86_64",
          memoryKiB: 16777216,
          cpus: 8,
          mhz: 2400,
          nodes: 1,
          sockets: 1,
          cores: 4,
          threads: 2,
        });
        const doms = await conn.listAllDomains();
        assert.deepEqual(await Promise.all(doms.map((d) => d.getName())), ["preexisting"]);
        // Domains of a node file start running.
        assert.deepEqual(await doms[0]!.getState(), { state: VIR_DOMAIN_RUNNING, reason: VIR_DOMAIN_RUNNING_UNKNOWN });
        assert.equal(await doms[0]!.getUUIDString(), "6f1c8e0e-7d4b-4b0e-9a55-0c2b3c4d5e6f");
      } finally {
        await conn.close();
      }
    });

    it("node memory stats: the test driver does not implement them (VIR_ERR_NO_SUPPORT)", async () => {
      const conn = await openNode();
      try {
        const result = await conn.getNodeMemoryStats().then(
          (stats) => ({ stats }),
          (error: unknown) => ({ error }),
        );
        if ("stats" in result) {
          // A libvirt whose test driver implements it: check the shape.
          assert.equal(typeof result.stats["total"], "number");
        } else {
          assert.ok(isLibvirtError(result.error, "VIR_ERR_NO_SUPPORT"), String(result.error));
          assert.equal(result.error.code, VIR_ERR_NO_SUPPORT);
          assert.match(result.error.message, /virNodeGetMemoryStats/);
        }
      } finally {
        await conn.close();
      }
    });

    it("keepalive is not supported by the test driver; a close callback registers and unregisters", async () => {
      const conn = await openNode();
      try {
        await rejectsWith(conn.setKeepAlive(5, 3), { code: VIR_ERR_NO_SUPPORT, fromBinding: false });
        await conn.registerCloseCallback(() => assert.fail("the test driver never closes on its own"));
        await rejectsWith(
          conn.registerCloseCallback(() => {}),
          { code: VIR_ERR_OPERATION_INVALID, fromBinding: true },
        );
        assert.equal(await conn.unregisterCloseCallback(), true);
        assert.equal(await conn.unregisterCloseCallback(), false);
        await conn.registerCloseCallback(() => {}); // left for close() to release
      } finally {
        await conn.close();
      }
    });
  });

  describe("errors", () => {
    it("a missing domain rejects with VIR_ERR_NO_DOMAIN from VIR_FROM_TEST", async () => {
      const conn = await lv.open("test:///default");
      try {
        const err = await rejectsWith(conn.lookupDomainByName("no-such-domain"), {
          code: VIR_ERR_NO_DOMAIN,
          codeName: "VIR_ERR_NO_DOMAIN",
          domain: VIR_FROM_TEST,
          fromBinding: false,
        });
        assert.equal(err.domainName, "VIR_FROM_TEST");
        assert.equal(err.name, "LibvirtError");
        assert.ok(err instanceof Error);
        assert.ok(isLibvirtError(err, VIR_ERR_NO_DOMAIN));
        assert.ok(isLibvirtError(err, "VIR_ERR_NO_DOMAIN"));
        assert.ok(!isLibvirtError(err, "VIR_ERR_NO_SUPPORT"));
        await rejectsWith(conn.lookupDomainByUUIDString("00000000-0000-0000-0000-000000000001"), {
          code: VIR_ERR_NO_DOMAIN,
          domain: VIR_FROM_TEST,
        });
        await rejectsWith(conn.lookupDomainByUUIDString("not-a-uuid"), {
          code: VIR_ERR_INVALID_ARG,
          domain: VIR_FROM_DOMAIN,
        });
      } finally {
        await conn.close();
      }
    });

    it("bad domain XML rejects with the XML error", async () => {
      const conn = await openNode();
      try {
        await rejectsWith(conn.defineXML("<domain"), { code: VIR_ERR_XML_DETAIL, domain: VIR_FROM_DOMAIN });
        await rejectsWith(conn.defineXML("<domain type='test'><name>x</name></domain>"), {
          code: VIR_ERR_XML_ERROR,
          domain: VIR_FROM_DOMAIN,
          message: /os <type>/,
        });
      } finally {
        await conn.close();
      }
    });

    it("an invalid URI rejects", async () => {
      await rejectsWith(lv.open("test://:bad:uri:"), {
        code: VIR_ERR_INTERNAL_ERROR,
        domain: VIR_FROM_URI,
        message: /Unable to parse URI/,
      });
      await rejectsWith(lv.open(`test://${path.join(s.dir, "missing.xml")}`), {
        code: VIR_ERR_XML_ERROR,
        domain: VIR_FROM_TEST,
      });
    });

    it("wrong argument types throw TypeError synchronously", async () => {
      assert.throws(() => lv.open(42 as unknown as string), TypeError);
      const conn = await lv.open("test:///default");
      try {
        assert.throws(() => conn.lookupDomainByName(undefined as unknown as string), TypeError);
        assert.throws(() => conn.listAllDomains("x" as unknown as number), TypeError);
        assert.throws(() => conn.registerLifecycleEvents(null as unknown as () => void), TypeError);
      } finally {
        await conn.close();
      }
    });

    it("a closed connection's calls (and its domains') reject instead of crashing", async () => {
      const conn = await lv.open("test:///default");
      const dom = await conn.lookupDomainByName("test");
      const inFlight = Array.from({ length: 20 }, () => dom.getState());
      const closing = conn.close();
      const settled = await Promise.allSettled(inFlight);
      for (const s of settled) {
        if (s.status === "fulfilled") assert.equal(s.value.state, VIR_DOMAIN_RUNNING);
        else assert.ok(isLibvirtError(s.reason, VIR_ERR_INVALID_CONN), String(s.reason));
      }
      assert.ok((await closing) >= 0);
      const closed = { code: VIR_ERR_INVALID_CONN, codeName: "VIR_ERR_INVALID_CONN", domain: VIR_FROM_NONE, fromBinding: true };
      await rejectsWith(conn.getHostname(), closed);
      await rejectsWith(conn.lookupDomainByName("test"), closed);
      await rejectsWith(conn.registerLifecycleEvents(() => {}), closed);
      await rejectsWith(dom.getState(), closed);
      await rejectsWith(dom.destroy(), closed);
      dom.free(); // harmless after close
    });

    it("a freed domain's calls reject with VIR_ERR_INVALID_DOMAIN", async () => {
      const conn = await lv.open("test:///default");
      try {
        const dom = await conn.lookupDomainByName("test");
        dom.free();
        dom.free();
        await rejectsWith(dom.getName(), { code: VIR_ERR_INVALID_DOMAIN, fromBinding: true });
      } finally {
        await conn.close();
      }
    });
  });

  describe("threading", () => {
    it("50 parallel getState calls all resolve", async () => {
      const conn = await lv.open("test:///default");
      try {
        const dom = await conn.lookupDomainByName("test");
        const states = await Promise.all(Array.from({ length: 50 }, () => dom.getState()));
        assert.equal(states.length, 50);
        for (const s of states) assert.equal(s.state, VIR_DOMAIN_RUNNING);
        // Mixed calls on several connections at once.
        const conns = await Promise.all(Array.from({ length: 5 }, () => openNode()));
        const infos = await Promise.all(conns.flatMap((c) => [c.getNodeInfo(), c.getNodeInfo()]));
        for (const i of infos) assert.equal(i.cpus, 8);
        assert.deepEqual(await Promise.all(conns.map((c) => c.close())), [0, 0, 0, 0, 0]);
      } finally {
        await conn.close();
      }
    });

    it("a blocked libvirt call does not block the event loop", { skip: process.platform !== "linux" }, async () => {
      // The test driver reads its node file when it opens: a FIFO makes that
      // read wait until this test writes to it, with the call in flight.
      const fifo = path.join(s.dir, "slow.xml");
      const mk = spawnSync("mkfifo", [fifo]);
      assert.equal(mk.status, 0, String(mk.stderr));
      const opening = lv.open(`test://${fifo}`);

      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      try {
        // Wait until libvirt has the FIFO open for reading (a non-blocking
        // open for writing fails with ENXIO until then).
        let fd: number | undefined;
        const deadline = Date.now() + 5000;
        while (fd === undefined) {
          try {
            fd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== "ENXIO" || Date.now() > deadline) throw e;
            await sleep(5);
          }
        }
        const ticksBefore = ticks;
        await sleep(100); // the open is blocked in libvirt all along
        assert.ok(ticks - ticksBefore >= 5, `timer ticked ${ticks - ticksBefore} times while libvirt was blocked`);
        fs.writeSync(fd, NODE_XML);
        fs.closeSync(fd);
      } finally {
        clearInterval(timer);
      }
      const conn = await opening;
      try {
        assert.equal((await conn.getNodeInfo()).cpus, 8);
      } finally {
        await conn.close();
      }
    });
  });

});
