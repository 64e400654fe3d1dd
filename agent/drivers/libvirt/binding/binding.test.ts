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
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import {
  ADDON_PATH,
  ALL_CONSTANTS,
  isLibvirtError,
  LibvirtError,
  openFlags,
  tryLoadLibvirt,
  type LibvirtBinding,
  type LibvirtConnection,
  type LifecycleEvent,
  VIR_CONNECT_LIST_DOMAINS_ACTIVE,
  VIR_CONNECT_LIST_DOMAINS_INACTIVE,
  VIR_DOMAIN_DESTROY_GRACEFUL,
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
  VIR_DOMAIN_PAUSED,
  VIR_DOMAIN_PAUSED_USER,
  VIR_DOMAIN_RUNNING,
  VIR_DOMAIN_RUNNING_BOOTED,
  VIR_DOMAIN_RUNNING_UNKNOWN,
  VIR_DOMAIN_RUNNING_UNPAUSED,
  VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN,
  VIR_DOMAIN_SHUTOFF,
  VIR_DOMAIN_SHUTOFF_DESTROYED,
  VIR_DOMAIN_SHUTOFF_SAVED,
  VIR_DOMAIN_SHUTOFF_SHUTDOWN,
  VIR_DOMAIN_SHUTOFF_UNKNOWN,
  VIR_DOMAIN_AFFECT_CONFIG,
  VIR_DOMAIN_AFFECT_LIVE,
  VIR_DOMAIN_BLOCK_RESIZE_BYTES,
  VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP,
  VIR_DOMAIN_UNDEFINE_MANAGED_SAVE,
  VIR_DOMAIN_UNDEFINE_NVRAM,
  VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
  VIR_DOMAIN_XML_INACTIVE,
  VIR_ERR_ARGUMENT_UNSUPPORTED,
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
  VIR_MIGRATE_LIVE,
  VIR_MIGRATE_PEER2PEER,
  VIR_MIGRATE_PERSIST_DEST,
  VIR_MIGRATE_UNDEFINE_SOURCE,
} from "./index.js";

const loaded = tryLoadLibvirt();
const required = process.env.LIBVIRT_BINDING_REQUIRED === "1";
const skip = loaded instanceof Error && !required ? `libvirt binding not built (${ADDON_PATH})` : false;

/** The node XML of a private test host: 8 CPUs (1 socket × 4 cores × 2 threads) at 2400 MHz, 16 GiB. */
const NODE_XML = `<?xml version="1.0"?>
<node>
  <cpu>
    <mhz>2400</mhz>
    <model>x86_64</model>
    <active>8</active>
    <nodes>1</nodes>
    <sockets>1</sockets>
    <cores>4</cores>
    <threads>2</threads>
  </cpu>
  <memory>16777216</memory>
  <domain type="test">
    <name>preexisting</name>
    <uuid>6f1c8e0e-7d4b-4b0e-9a55-0c2b3c4d5e6f</uuid>
    <memory>1048576</memory>
    <vcpu>2</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
`;

function domainXml(name: string, memoryKiB = 524288, vcpus = 2): string {
  return `<domain type='test'>
  <name>${name}</name>
  <memory unit='KiB'>${memoryKiB}</memory>
  <vcpu>${vcpus}</vcpu>
  <os><type>hvm</type></os>
</domain>`;
}

/** Asserts that `p` rejects with a LibvirtError with these fields; returns it. */
async function rejectsWith(
  p: Promise<unknown>,
  expected: { code: number; codeName?: string; domain?: number; fromBinding?: boolean; message?: RegExp },
): Promise<LibvirtError> {
  let error: unknown;
  try {
    await p;
  } catch (e) {
    error = e;
  }
  assert.ok(error !== undefined, "expected a rejection");
  assert.ok(error instanceof LibvirtError, `expected a LibvirtError, got ${String(error)}`);
  assert.equal(error.code, expected.code, `code (${error.codeName}: ${error.message})`);
  if (expected.codeName !== undefined) assert.equal(error.codeName, expected.codeName);
  if (expected.domain !== undefined) assert.equal(error.domain, expected.domain, `domain (${error.domainName})`);
  if (expected.fromBinding !== undefined) assert.equal(error.fromBinding, expected.fromBinding);
  if (expected.message !== undefined) assert.match(error.message, expected.message);
  return error;
}

let uniq = 0;
const uniqueName = (prefix: string) => `${prefix}-${process.pid}-${++uniq}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe("libvirt binding", { skip }, () => {
  let lv: LibvirtBinding;
  let tmp: string;
  let nodeUri: string;

  before(() => {
    if (loaded instanceof Error) throw loaded;
    lv = loaded;
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "novamesh-libvirt-"));
    const nodeFile = path.join(tmp, "node.xml");
    fs.writeFileSync(nodeFile, NODE_XML);
    nodeUri = `test://${nodeFile}`;
  });

  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A private test host (each open of a file URI is its own host). */
  async function openNode(): Promise<LibvirtConnection> {
    return lv.open(nodeUri);
  }

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

  describe("domain lifecycle (custom test host)", () => {
    let conn: LibvirtConnection;
    before(async () => {
      conn = await openNode();
    });
    after(async () => {
      await conn.close();
    });

    it("define, start, pause/resume, shutdown, destroy, reboot, reset, undefine with state reasons", async () => {
      const name = uniqueName("life");
      const dom = await conn.defineXML(domainXml(name, 524288, 2));
      const state = () => dom.getState();

      assert.equal(await dom.getName(), name);
      assert.match(await dom.getUUIDString(), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(await dom.isPersistent(), true);
      assert.equal(await dom.isActive(), false);
      assert.equal(await dom.getID(), -1);
      assert.deepEqual(await state(), { state: VIR_DOMAIN_SHUTOFF, reason: VIR_DOMAIN_SHUTOFF_UNKNOWN });
      const { cpuTimeNs, ...info } = await dom.getInfo();
      assert.deepEqual(info, { state: VIR_DOMAIN_SHUTOFF, maxMemKiB: 524288, memoryKiB: 524288, nrVirtCpu: 2 });
      assert.ok(cpuTimeNs > 0, "the test driver reports the time of day as CPU time");

      await dom.create();
      assert.deepEqual(await state(), { state: VIR_DOMAIN_RUNNING, reason: VIR_DOMAIN_RUNNING_BOOTED });
      assert.equal(await dom.isActive(), true);
      assert.ok((await dom.getID()) > 0);
      // Starting a running domain: the test driver says VIR_ERR_INTERNAL_ERROR.
      await rejectsWith(dom.create(), { code: VIR_ERR_INTERNAL_ERROR, domain: VIR_FROM_TEST, message: /already running/ });

      await dom.suspend();
      assert.deepEqual(await state(), { state: VIR_DOMAIN_PAUSED, reason: VIR_DOMAIN_PAUSED_USER });
      await dom.resume();
      assert.deepEqual(await state(), { state: VIR_DOMAIN_RUNNING, reason: VIR_DOMAIN_RUNNING_UNPAUSED });

      await dom.shutdown();
      assert.deepEqual(await state(), { state: VIR_DOMAIN_SHUTOFF, reason: VIR_DOMAIN_SHUTOFF_SHUTDOWN });

      await dom.create();
      await dom.destroy();
      assert.deepEqual(await state(), { state: VIR_DOMAIN_SHUTOFF, reason: VIR_DOMAIN_SHUTOFF_DESTROYED });
      await rejectsWith(dom.destroy(), { code: VIR_ERR_OPERATION_INVALID, domain: VIR_FROM_DOMAIN });

      await dom.createWithFlags(0);
      await dom.reboot(0);
      await dom.reset();
      assert.equal((await state()).state, VIR_DOMAIN_RUNNING);

      await dom.shutdownFlags(0);
      assert.deepEqual(await state(), { state: VIR_DOMAIN_SHUTOFF, reason: VIR_DOMAIN_SHUTOFF_SHUTDOWN });
      await dom.create();
      // The test driver takes no shutdown flags.
      await rejectsWith(dom.shutdownFlags(VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN), {
        code: VIR_ERR_INVALID_ARG,
        domain: VIR_FROM_TEST,
      });
      await dom.destroyFlags(VIR_DOMAIN_DESTROY_GRACEFUL);
      assert.deepEqual(await state(), { state: VIR_DOMAIN_SHUTOFF, reason: VIR_DOMAIN_SHUTOFF_DESTROYED });

      const inactive = await conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_INACTIVE);
      assert.ok((await Promise.all(inactive.map((d) => d.getName()))).includes(name));
      const active = await conn.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE);
      assert.ok(!(await Promise.all(active.map((d) => d.getName()))).includes(name));

      // The test driver rejects VIR_DOMAIN_UNDEFINE_NVRAM (0x4): callers must
      // only pass it where the driver knows NVRAM (qemu).
      await rejectsWith(dom.undefineFlags(VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_NVRAM), {
        code: VIR_ERR_INVALID_ARG,
        domain: VIR_FROM_TEST,
      });
      await dom.undefineFlags(VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA);
      await rejectsWith(conn.lookupDomainByName(name), { code: VIR_ERR_NO_DOMAIN, domain: VIR_FROM_TEST });
    });

    it("managed save: save, image present, start restores, remove", async () => {
      const dom = await conn.defineXML(domainXml(uniqueName("save")));
      await dom.create();
      assert.equal(await dom.hasManagedSaveImage(), false);
      await dom.managedSave();
      assert.deepEqual(await dom.getState(), { state: VIR_DOMAIN_SHUTOFF, reason: VIR_DOMAIN_SHUTOFF_SAVED });
      assert.equal(await dom.hasManagedSaveImage(), true);
      await dom.create(); // restores (the test driver reports reason BOOTED, not RESTORED)
      assert.equal((await dom.getState()).state, VIR_DOMAIN_RUNNING);
      assert.equal(await dom.hasManagedSaveImage(), false);

      await dom.managedSave();
      await dom.managedSaveRemove();
      assert.equal(await dom.hasManagedSaveImage(), false);
      await dom.undefineFlags(VIR_DOMAIN_UNDEFINE_MANAGED_SAVE);
    });

    it("XML round trip: the XML a domain gives back defines the same domain", async () => {
      const name = uniqueName("xml");
      const dom = await conn.defineXML(domainXml(name, 262144, 1));
      const uuid = await dom.getUUIDString();
      const xml = await dom.getXMLDesc(VIR_DOMAIN_XML_INACTIVE);
      assert.match(xml, new RegExp(`<name>${name}</name>`));
      assert.match(xml, new RegExp(`<uuid>${uuid}</uuid>`));
      assert.match(xml, /<memory unit='KiB'>262144<\/memory>/);
      assert.match(xml, /<vcpu placement='static'>1<\/vcpu>/);

      const again = await conn.defineXML(xml);
      assert.equal(await again.getUUIDString(), uuid);
      assert.equal(await again.getXMLDesc(VIR_DOMAIN_XML_INACTIVE), xml);
      const byUuid = await conn.lookupDomainByUUIDString(uuid);
      assert.equal(await byUuid.getName(), name);
      await dom.undefine();
    });

    it("snapshots: snapshotCreateXML resolves the snapshot's name", async () => {
      const dom = await conn.defineXML(domainXml(uniqueName("snap")));
      await dom.create();
      assert.equal(await dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>"), "s1");
      await dom.destroy();
      await dom.undefineFlags(VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA);
    });

    it("createXML makes a transient domain that is gone once destroyed", async () => {
      const name = uniqueName("transient");
      const dom = await conn.createXML(domainXml(name));
      assert.equal(await dom.isPersistent(), false);
      assert.deepEqual(await dom.getState(), { state: VIR_DOMAIN_RUNNING, reason: VIR_DOMAIN_RUNNING_BOOTED });
      await dom.destroy();
      await rejectsWith(conn.lookupDomainByName(name), { code: VIR_ERR_NO_DOMAIN, domain: VIR_FROM_TEST });
      await rejectsWith(dom.getState(), { code: VIR_ERR_NO_DOMAIN, domain: VIR_FROM_TEST });
    });

    it("device attach and detach reach libvirt: the test driver has neither (VIR_ERR_NO_SUPPORT)", async () => {
      const dom = await conn.defineXML(domainXml(uniqueName("hotplug")));
      await dom.create();
      const nic = "<interface type='bridge'><mac address='fa:16:3e:00:00:01'/><source bridge='br0'/></interface>";
      const flags = VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG;
      await rejectsWith(dom.attachDeviceFlags(nic, flags), { code: VIR_ERR_NO_SUPPORT, domain: VIR_FROM_DOMAIN, message: /virDomainAttachDeviceFlags/ });
      await rejectsWith(dom.detachDeviceFlags(nic, flags), { code: VIR_ERR_NO_SUPPORT, domain: VIR_FROM_DOMAIN, message: /virDomainDetachDeviceFlags/ });
      assert.equal((await dom.getXMLDesc(VIR_DOMAIN_XML_INACTIVE)).includes("fa:16:3e:00:00:01"), false);
      assert.throws(() => dom.attachDeviceFlags(undefined as unknown as string, flags), TypeError);
      assert.throws(() => dom.detachDeviceFlags(nic, "live" as unknown as number), TypeError);
      await dom.destroy();
      await dom.undefine();
    });

    it("blockResize reaches libvirt: the test driver has it not (VIR_ERR_NO_SUPPORT); a size that is no whole number is a TypeError", async () => {
      const dom = await conn.defineXML(domainXml(uniqueName("resize")));
      await dom.create();
      await rejectsWith(dom.blockResize("vda", 2 * 1024 ** 3, VIR_DOMAIN_BLOCK_RESIZE_BYTES), { code: VIR_ERR_NO_SUPPORT, domain: VIR_FROM_DOMAIN, message: /virDomainBlockResize/ });
      assert.throws(() => dom.blockResize("vda", 1.5, VIR_DOMAIN_BLOCK_RESIZE_BYTES), TypeError);
      assert.throws(() => dom.blockResize("vda", -1), TypeError);
      assert.throws(() => dom.blockResize("vda", "2G" as unknown as number), TypeError);
      await dom.destroy();
      await dom.undefine();
    });

    it("qemuMonitorCommand reaches libvirt-qemu: the test driver has no qemu monitor; a command that is no string is a TypeError", async () => {
      const dom = await conn.defineXML(domainXml(uniqueName("monitor")));
      await dom.create();
      await assert.rejects(dom.qemuMonitorCommand("info status", VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP), (err: LibvirtError) => err.code !== 0 && /qemu/i.test(err.message));
      assert.throws(() => dom.qemuMonitorCommand(7 as unknown as string), TypeError);
      await dom.destroy();
      await dom.undefine();
    });

    it("migration and jobs reject with the test driver's libvirt errors", async () => {
      const dom = await conn.defineXML(domainXml(uniqueName("mig")));
      await dom.create();
      const flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE;
      await rejectsWith(
        dom.migrateToURI3("test:///default", { bandwidthMiBs: 100, migrateUri: "tcp://127.0.0.1:49152", migrateDisks: ["vda", "vdc"] }, flags | VIR_MIGRATE_PEER2PEER),
        { code: VIR_ERR_ARGUMENT_UNSUPPORTED, domain: VIR_FROM_DOMAIN, message: /p2p migration/ },
      );
      await rejectsWith(dom.migrateToURI3(null, { migrateUri: "tcp://127.0.0.1:49152" }, flags), {
        code: VIR_ERR_ARGUMENT_UNSUPPORTED,
        domain: VIR_FROM_DOMAIN,
        message: /direct migration/,
      });
      await rejectsWith(dom.getJobInfo(), { code: VIR_ERR_NO_SUPPORT, domain: VIR_FROM_DOMAIN });
      await rejectsWith(dom.getJobStats(), { code: VIR_ERR_NO_SUPPORT, domain: VIR_FROM_DOMAIN });
      await rejectsWith(dom.abortJob(), { code: VIR_ERR_NO_SUPPORT, domain: VIR_FROM_DOMAIN });
      assert.equal((await dom.getState()).state, VIR_DOMAIN_RUNNING, "unchanged");
      assert.throws(() => dom.migrateToURI3(null, { bandwidthMiBs: "fast" as unknown as number }, 0), TypeError);
      assert.throws(() => dom.migrateToURI3(null, { migrateDisks: "vda" as unknown as string[] }, 0), /migrateDisks must be an array of strings/);
      assert.throws(() => dom.migrateToURI3(null, { migrateDisks: ["vda", 2 as unknown as string] }, 0), /migrateDisks must be an array of strings/);
      await dom.destroy();
      await dom.undefine();
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
      await rejectsWith(lv.open(`test://${path.join(tmp, "missing.xml")}`), {
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
      const fifo = path.join(tmp, "slow.xml");
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
      const script = path.join(tmp, `child-${++uniq}.cjs`);
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
