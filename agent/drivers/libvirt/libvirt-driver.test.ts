/**
 * The libvirt driver on libvirt's built-in test hypervisor: every host is a
 * `test:///<node file>` of its own (4 CPUs, 4 GiB), with real qcow2
 * overlays made by qemu-img and a directory image store. Skipped when the
 * binding is not built, unless LIBVIRT_BINDING_REQUIRED=1 (npm test).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { driverContract } from "../contract.js";
import { DriverError, NotSupportedError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import { ADDON_PATH, tryLoadLibvirt } from "./binding/index.js";
import { DirectoryImageStore, hashFile } from "./image-store.js";
import { BlankingStore } from "./test-image-store.js";
import { LibvirtDriver, domainTypeFor } from "./libvirt-driver.js";
import { imageInfo } from "./qemu-img.js";

const loaded = tryLoadLibvirt();
const required = process.env.LIBVIRT_BINDING_REQUIRED === "1";
const qemuImg = spawnSync("qemu-img", ["--version"], { stdio: "ignore" }).status === 0;
const skip =
  loaded instanceof Error && !required
    ? `libvirt binding not built (${ADDON_PATH})`
    : !qemuImg && !required
      ? "qemu-img is not installed (qemu-utils)"
      : false;

const NODE_XML = `<?xml version="1.0"?>
<node>
  <cpu><mhz>2400</mhz><model>x86_64</model><active>4</active><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>4194304</memory>
</node>
`;

let root: string;
let store: BlankingStore;
let hosts = 0;

async function makeHost(hostname: string, extra: { nodeXml?: string } = {}): Promise<LibvirtDriver> {
  const dir = join(root, `${hostname}-${++hosts}`);
  await mkdir(dir, { recursive: true });
  const nodeFile = join(dir, "node.xml");
  await writeFile(nodeFile, extra.nodeXml ?? NODE_XML);
  return new LibvirtDriver({
    hostname,
    uri: `test://${nodeFile}`,
    instancesPath: join(dir, "instances"),
    imageStore: store,
    diskGb: 20,
    imageCacheMinAgeSeconds: 0,
    shutdownRetrySeconds: 1,
  });
}

describe("libvirt driver", { skip }, () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "novamesh-libvirt-driver-"));
    store = new BlankingStore(new DirectoryImageStore(join(root, "store")));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  driverContract("libvirt (test:///)", (hostname) => makeHost(hostname), {
    lacking: {
      liveMigration: "libvirt's test hypervisor cannot migrate (libvirt-qemu.test.ts runs these on qemu)",
      interfaceHotplug: "libvirt's test hypervisor has no device attach or detach, VIR_ERR_NO_SUPPORT (libvirt-qemu.test.ts runs these on qemu)",
      volumeAttach: "libvirt's test hypervisor has no device attach or detach, VIR_ERR_NO_SUPPORT (libvirt-volumes.test.ts attaches volumes on qemu)",
    },
  });

  test("spawn makes a qcow2 overlay on a cached base image, and destroy removes disk and unused base", async () => {
    const driver = await makeHost("layout");
    await driver.init();
    try {
      const inst = testInstance({ diskGb: 2 });
      await driver.spawn({ instance: inst });
      const instances = join(root, `layout-${hosts}`, "instances");
      const disk = await imageInfo(join(instances, inst.id, "disk"));
      assert.equal(disk.format, "qcow2");
      assert.equal(disk.virtualSizeBytes, 2 * 1024 ** 3, "the overlay has the flavor's root disk size");
      assert.equal(disk.backingFile, join(instances, "_base", inst.image.id));
      assert.deepEqual(await readdir(join(instances, "_base")), [inst.image.id]);
      await driver.destroy({ instanceId: inst.id });
      assert.deepEqual(await readdir(instances).then((n) => n.filter((x) => x !== "_base")), []);
      assert.deepEqual(await readdir(join(instances, "_base")), [], "the unused base image is cleaned");
    } finally {
      await driver.close();
    }
  });

  test("a base image whose bytes do not match the image checksum is refused and nothing is left", async () => {
    const driver = await makeHost("checksum");
    await driver.init();
    try {
      const inst = testInstance({ image: { ...testInstance().image, id: "11111111-2222-4333-8444-555555555555", checksum: "0".repeat(64) } });
      await assert.rejects(driver.spawn({ instance: inst }), (err: unknown) => {
        assert.ok(err instanceof DriverError);
        assert.equal(err.code, "IMAGE_CHECKSUM_MISMATCH");
        assert.equal(err.retryable, false);
        return true;
      });
      assert.deepEqual((await driver.report()).instances, []);
    } finally {
      await driver.close();
    }
  });

  test("libvirt's test hypervisor has no device hot-plug: the capability is off and the calls throw NotSupportedError", async () => {
    const driver = await makeHost("hotplug");
    await driver.init();
    try {
      assert.equal(driver.capabilities.interfaceHotplug, false);
      assert.equal(driver.capabilities.volumeAttach, false);
      const inst = testInstance();
      await driver.spawn({ instance: inst });
      const vif = { portId: "p", mac: "fa:16:3e:00:00:01", bridge: "br0", tap: "tap0", mtu: 1500 };
      await assert.rejects(driver.attachInterface({ instanceId: inst.id, vif }), NotSupportedError);
      await assert.rejects(driver.detachInterface({ instanceId: inst.id, mac: vif.mac }), NotSupportedError);
      const connection = { host: "127.0.0.1", port: 10809, exportName: "att-1", tls: true } as const;
      await assert.rejects(driver.attachVolume({ instanceId: inst.id, attachmentId: "att-1", connection }), NotSupportedError);
      await assert.rejects(driver.detachVolume({ instanceId: inst.id, attachmentId: "att-1" }), NotSupportedError);
      await assert.rejects(driver.volumes({ instanceId: inst.id }), NotSupportedError);
      await driver.destroy({ instanceId: inst.id });
    } finally {
      await driver.close();
    }
  });

  test("a snapshot is stored in the image store with the size and checksum it reports", async () => {
    const driver = await makeHost("snapshot");
    await driver.init();
    try {
      const inst = testInstance();
      await driver.spawn({ instance: inst });
      const imageId = testInstance().id;
      let uploading = 0;
      const info = await driver.snapshot({ instanceId: inst.id, imageId, imageName: "snap", onUploading: () => uploading++ });
      assert.equal(uploading, 1);
      const stored = await hashFile(join(root, "store", imageId));
      assert.deepEqual({ sizeBytes: info.sizeBytes, checksum: info.checksum }, stored);
      const img = await imageInfo(join(root, "store", imageId));
      assert.equal(img.format, "qcow2");
      assert.equal(img.backingFile, undefined, "a snapshot stands on its own");
      await driver.destroy({ instanceId: inst.id });
    } finally {
      await driver.close();
    }
  });

  test("a domain someone else defined is reported with its UUID and never touched", async () => {
    const foreign = "6f1c8e0e-7d4b-4b0e-9a55-0c2b3c4d5e6f";
    const driver = await makeHost("foreign", {
      nodeXml: NODE_XML.replace(
        "</node>",
        `<domain type="test"><name>hand-made</name><uuid>${foreign}</uuid><memory>1048576</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain></node>`,
      ),
    });
    await driver.init();
    try {
      const before = await driver.report();
      assert.deepEqual(before.instances, [{ serverId: foreign, powerState: "RUNNING" }]);
      assert.equal(before.freeMemoryMb, 4096, "only novamesh's domains count against the flavor capacity");
      const inst = testInstance();
      await driver.spawn({ instance: inst });
      await driver.destroy({ instanceId: inst.id });
      await driver.destroy({ instanceId: foreign });
      assert.deepEqual((await driver.report()).instances, [{ serverId: foreign, powerState: "RUNNING" }]);
    } finally {
      await driver.close();
    }
  });
});

describe("domain type", () => {
  const caps = (features: string[], kvm: boolean) =>
    `<capabilities><host><cpu><arch>x86_64</arch>${features.map((f) => `<feature name='${f}'/>`).join("")}</cpu></host>` +
    `<guest><arch name='x86_64'><domain type='qemu'/>${kvm ? "<domain type='kvm'/>" : ""}</arch></guest></capabilities>`;

  test("kvm only with KVM offered and hardware virtualisation in the host CPU, TCG otherwise", () => {
    assert.equal(domainTypeFor(caps(["vmx", "sse4.2"], true)), "kvm");
    assert.equal(domainTypeFor(caps(["svm"], true)), "kvm");
    assert.equal(domainTypeFor(caps(["sse4.2", "hypervisor"], true)), "qemu", "a /dev/kvm without vmx/svm hangs guests");
    assert.equal(domainTypeFor(caps(["vmx"], false)), "qemu");
    assert.equal(domainTypeFor(""), "qemu");
  });
});
