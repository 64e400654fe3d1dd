/**
 * What the real-guest volume tests of the libvirt driver share: hosts A and
 * B (`scripts/libvirtd-hosts.sh up`) as the environment names them, the
 * test guest of `scripts/build-test-guest.sh` (which prints its virtio
 * disks on the console), and a volume host: a file backend exporting its
 * volumes over NBD with TLS on host A's address (B, in its own network
 * namespace, reaches it) with a server certificate from the hosts' CA
 * (NOVAMESH_NBD_CA), whose client certificates qemu on each host presents.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileVolumeBackend } from "../../volume/file/file-backend.js";
import { issue } from "../../volume/file/test-certs.js";
import { fileBackendSkip } from "../../volume/file/test-qemu.js";
import { testInstance } from "../test-instance.js";
import type { InstanceSpec, VolumeConnection } from "../types.js";
import { DirectoryImageStore } from "./image-store.js";
import { LibvirtDriver, type LibvirtDriverOptions } from "./libvirt-driver.js";
import { uriHost } from "./live-migration.js";
import { BlankingStore } from "./test-image-store.js";

export const A = process.env.NOVAMESH_LIBVIRT_A;
export const B = process.env.NOVAMESH_LIBVIRT_B;
export const A_NAME = process.env.NOVAMESH_LIBVIRT_A_NAME;
export const B_NAME = process.env.NOVAMESH_LIBVIRT_B_NAME;
const CA = process.env.NOVAMESH_NBD_CA;
export const GUEST = process.env.NOVAMESH_TEST_GUEST ?? "/tmp/novamesh-test-guest";

/** Why these tests cannot run here (false: they can); with NOVAMESH_LIBVIRT_REQUIRED=1 a reason is an error. */
export const volumeHostSkip: string | false = (() => {
  const skip =
    A && B && A_NAME && B_NAME && CA
      ? (fileBackendSkip() ?? false)
      : "NOVAMESH_LIBVIRT_A, NOVAMESH_LIBVIRT_B, NOVAMESH_LIBVIRT_A_NAME, NOVAMESH_LIBVIRT_B_NAME and NOVAMESH_NBD_CA are not set (npm run test:libvirt sets them)";
  if (skip && process.env.NOVAMESH_LIBVIRT_REQUIRED === "1") throw new Error(skip);
  return skip;
})();

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
const kernelId = "7e3f0000-0000-4000-8000-00000000001a";
const ramdiskId = "7e3f0000-0000-4000-8000-00000000001b";

/** A temporary directory with an image store holding the test guest's kernel and ramdisk, and a volume host (see the module comment). */
export class VolumeTestHost {
  private constructor(
    /** The directory everything is made under. */
    readonly root: string,
    /** Images: the guest's kernel and ramdisk, and blank disks for other images. */
    readonly store: BlankingStore,
    readonly backend: FileVolumeBackend,
  ) {}

  /**
   * Made under a new temporary directory named `prefix`…; its exports take
   * ports from `firstPort` (plus an offset of this process, so files run
   * at once do not collide), one per exported volume.
   */
  static async start(prefix: string, firstPort: number): Promise<VolumeTestHost> {
    const root = await mkdtemp(join(tmpdir(), prefix));
    const store = new BlankingStore(new DirectoryImageStore(join(root, "store")));
    await store.put(kernelId, join(GUEST, "vmlinuz"));
    await store.put(ramdiskId, join(GUEST, "initrd.img"));
    const serverDir = join(root, "server-tls");
    // Listening on A's underlay address, which host B (its own network namespace) reaches too.
    const address = uriHost(A!) ?? "127.0.0.1";
    await issue(CA!, serverDir, "server", "/O=novamesh/CN=volume-host", `IP:${address}`);
    const first = firstPort + (process.pid % 40) * 100;
    const backend = new FileVolumeBackend({
      pools: [{ name: "p1", path: join(root, "p1"), limitBytes: 8 * GiB }],
      stateDir: join(root, "x"),
      exports: { address, ports: [first, first + 99], tlsDir: serverDir },
      commandTimeoutMs: 10_000,
    });
    return new VolumeTestHost(root, store, backend);
  }

  /** The test guest, booted from its kernel and initramfs, printing its disks on the console. */
  guest(): InstanceSpec {
    const base = testInstance({ memoryMb: 256 });
    return testInstance({
      memoryMb: 256,
      image: {
        ...base.image,
        id: "7e3f0000-0000-4000-8000-00000000001c", // a blank root disk (BlankingStore): vda, never read
        properties: { kernel_id: kernelId, ramdisk_id: ramdiskId, os_command_line: "console=ttyS0 quiet novamesh.tick=0" },
      },
    });
  }

  /** A libvirt driver for host `hostname` at `uri`, its instances under `<root>/<dir>`. */
  driverOn(hostname: string, uri: string, dir: string, extra: Partial<LibvirtDriverOptions> = {}): LibvirtDriver {
    return new LibvirtDriver({
      hostname,
      uri,
      instancesPath: join(this.root, dir, "instances"),
      imageStore: this.store,
      diskGb: 20,
      allocationRatio: { memoryMb: 1, diskGb: 1 },
      imageCacheMinAgeSeconds: 0,
      shutdownRetrySeconds: 1,
      shutdownTimeoutSeconds: 5,
      ...extra,
    });
  }

  /** A volume (64 MiB unless said) whose first bytes are `marker` (written into its source image before the volume is made). */
  async volumeWith(marker: string, sizeBytes = 64 * MiB): Promise<string> {
    const id = `vol-${randomBytes(4).toString("hex")}`;
    const image = join(this.root, `${id}.raw`);
    await writeFile(image, Buffer.concat([Buffer.from(`${marker}\n`), Buffer.alloc(MiB - marker.length - 1)]));
    const info = await this.backend.create(id, "p1", sizeBytes, { kind: "image", path: image, format: "raw" });
    assert.equal(info.sizeBytes, sizeBytes);
    return id;
  }

  /** An export of the volume made for host `client`, under a new attachment id (or `attachmentId`). */
  async exportTo(volumeId: string, client: string, attachmentId = `att-${randomBytes(4).toString("hex")}`): Promise<{ attachmentId: string; connection: VolumeConnection }> {
    const e = await this.backend.export(volumeId, attachmentId, client);
    return { attachmentId, connection: { host: e.host, port: e.port, exportName: e.exportName, tls: true } };
  }

  /** Stops the export daemons and removes the directory. */
  async close(): Promise<void> {
    try {
      await this.backend.close({ stopExports: true });
    } finally {
      await rm(this.root, { recursive: true, force: true });
    }
  }
}
