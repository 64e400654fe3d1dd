/**
 * The binding's domain calls against libvirt's test driver, on a private
 * test host (`test:///<file>`, see test-kit.ts): lifecycle with state
 * reasons, managed save, XML round trip, snapshots, transient domains, and
 * the calls the test driver refuses (devices, block resize, the qemu
 * monitor, migration and jobs). Skipped without the addon, as
 * binding.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  LibvirtError,
  type LibvirtBinding,
  type LibvirtConnection,
  VIR_CONNECT_LIST_DOMAINS_ACTIVE,
  VIR_CONNECT_LIST_DOMAINS_INACTIVE,
  VIR_DOMAIN_DESTROY_GRACEFUL,
  VIR_DOMAIN_PAUSED,
  VIR_DOMAIN_PAUSED_USER,
  VIR_DOMAIN_RUNNING,
  VIR_DOMAIN_RUNNING_BOOTED,
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
  VIR_ERR_NO_DOMAIN,
  VIR_ERR_NO_SUPPORT,
  VIR_ERR_OPERATION_INVALID,
  VIR_FROM_DOMAIN,
  VIR_FROM_TEST,
  VIR_MIGRATE_LIVE,
  VIR_MIGRATE_PEER2PEER,
  VIR_MIGRATE_PERSIST_DEST,
  VIR_MIGRATE_UNDEFINE_SOURCE,
} from "./index.js";
import { binding, scratch, type Scratch, skip, domainXml, rejectsWith, uniqueName } from "./test-kit.js";

describe("libvirt binding: domains", { skip }, () => {
  let lv: LibvirtBinding;
  let s: Scratch;
  before(() => {
    lv = binding();
    s = scratch();
  });
  after(() => s.remove());

  /** A private test host (each open of a file URI is its own host). */
  const openNode = (): Promise<LibvirtConnection> => lv.open(s.nodeUri);

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

});
