/**
 * A real guest through the whole stack: gRPC CreateServer → scheduler →
 * NATS → agent → libvirt → qemu (TCG), on the two libvirtds of
 * `scripts/libvirtd-hosts.sh` and the tiny guest of
 * `scripts/build-test-guest.sh`, whose kernel, initramfs and disk are
 * uploaded through ImageService. Runs when NOVAMESH_LIBVIRT_A,
 * NOVAMESH_LIBVIRT_B and NOVAMESH_TEST_GUEST are set (`npm run test:libvirt`).
 */
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ImageStatus } from "../gen/novamesh/compute/v1/image.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { RebootType, ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { loadLibvirt } from "../agent/drivers/libvirt/binding/index.js";
import { hashFile } from "../agent/drivers/libvirt/image-store.js";
import { downloadImageFile } from "../scripts/image-files.js";
import { GUEST_READY_LINE, registerTestGuest } from "../scripts/test-guest.js";
import { assertCapacityExact, eventually, settled } from "./harness.js";
import { removeDomains } from "./libvirt-domains.js";
import { isoFiles } from "../agent/drivers/libvirt/test-iso.js";
import { stack } from "./stack.js";

const A = process.env.NOVAMESH_LIBVIRT_A;
const B = process.env.NOVAMESH_LIBVIRT_B;
const GUEST = process.env.NOVAMESH_TEST_GUEST;
const skip = A && B && GUEST ? false : "NOVAMESH_LIBVIRT_A, NOVAMESH_LIBVIRT_B and NOVAMESH_TEST_GUEST are not set (npm run test:libvirt)";
if (skip && process.env.NOVAMESH_LIBVIRT_REQUIRED === "1") throw new Error(skip);

/** Occurrences of `line` in `text`. */
const count = (text: string, line: string) => text.split("\n").filter((l) => l.includes(line)).length;
/** The guest's latest "alive uptime=N" (seconds since it booted), or undefined. */
const uptime = (text: string) => {
  const all = [...text.matchAll(/alive uptime=([\d.]+)/g)];
  return all.length ? Number(all.at(-1)![1]) : undefined;
};

describe("a real guest through the whole stack (two libvirtds, qemu)", { skip }, () => {
  const uris = new Map<string, string>();
  const servers: string[] = [];
  // A failed run leaves no domain behind to trouble the next one (removed before the stack's dir goes).
  after(async () => {
    for (const uri of uris.values()) await removeDomains(uri, servers).catch(() => undefined);
  });
  let imageId: string;
  // Periodic reports only every hour (hosts stay up for two): a power state the API learns
  // without an op of its own comes from libvirt's lifecycle events.
  const fx = stack({
    name: "libvirt-qemu",
    controller: { reportIntervalSeconds: 3600, serviceDownTimeSeconds: 7200 },
    members: [],
    images: [],
    agents: ({ id, env }) =>
      ([["a", A!], ["b", B!]] as const).map(([name, uri]) => {
        const host = `qemu${id}-${name}`;
        uris.set(host, uri);
        return { host, driverArgs: ["--driver", "libvirt", "--libvirt-uri", uri, "--live-migration-uri", uri] };
      }),
    beforeAgents: async () => {
      ({ imageId } = await registerTestGuest(admin.images.raw, admin.images.metadata(), GUEST!, { name: `guest-${env.id}` }));
      await admin.flavors.createFlavor({
        flavor: { id: `lv.tiny.${env.id}`, name: `lv.tiny.${env.id}`, vcpus: 1, ramMb: 256, diskGb: 1, description: "", extraSpecs: {} },
      });
    },
    removeDir: true,
  });
  const { env, admin, dir, hosts } = fx;

  const consoleOf = async (id: string) => (await admin.servers.getConsoleOutput({ id, length: 0 })).output;
  const consoleUntil = async (id: string, pred: (text: string) => boolean, what: string) => {
    let last = "";
    try {
      return await eventually(async () => {
        last = await consoleOf(id);
        return pred(last) ? last : undefined;
      }, { what, timeoutMs: 90_000, intervalMs: 500 });
    } catch (err) {
      throw new Error(`${(err as Error).message}; the console ends with:\n${last.slice(-1500)}`);
    }
  };

  test("the hosts are qemu hypervisors with this machine's CPUs and memory", async () => {
    const hv = (await admin.hypervisors()).filter((h) => hosts.includes(h.hostname));
    assert.equal(hv.length, 2);
    for (const h of hv) {
      assert.equal(h.hypervisorType, "QEMU");
      assert.ok(h.vcpus >= 1 && h.memoryMb > 1024, `${h.hostname}: ${h.vcpus} vCPUs, ${h.memoryMb} MiB`);
    }
  });

  test("boot with a config drive, the power actions, a snapshot and a live migration, then delete without a trace", async (t) => {
    const key = (await admin.keypairs.createKeypair({ name: `guest-key-${env.id}`, publicKey: "" })).keypair!;
    const created = (
      await admin.servers.createServer({
        name: "Guest 1",
        flavorId: `lv.tiny.${env.id}`,
        imageId,
        keyName: key.name,
        userData: Buffer.from("#!/bin/sh -e\necho configured by user data\n"),
        configDrive: true,
      })
    ).server!;
    const s = await settled(admin, created.id, ServerStatus.SERVER_STATUS_ACTIVE, 120_000);
    const id = s.id;
    servers.push(id);
    let text = await consoleUntil(id, (t) => count(t, GUEST_READY_LINE) === 1 && uptime(t) !== undefined, "the guest says it is ready");
    let boots = 1;
    // The guest read its config drive: its host name, its key's fingerprint (ssh-keygen's), its user data's first line.
    assert.match(text, new RegExp(`config-drive /dev/sr0 hostname=guest-1 key=${key.name}:${key.fingerprint.replace(/[+/]/g, "\\$&")} user-data=#!/bin/sh -e\r?$`, "m"));
    const drive = async (host: string) => isoFiles(join(dir, host, "instances", id, "disk.config"));
    const layout = ["/openstack/latest/meta_data.json", "/openstack/latest/network_data.json", "/openstack/latest/user_data", "/openstack/latest/vendor_data.json", "/openstack/latest/vendor_data2.json"];
    assert.deepEqual(await drive(s.host), { label: "config-2", files: layout }, "xorriso's listing of the ISO: the OpenStack layout");

    const act = async (call: () => Promise<unknown>, status: ServerStatus) => {
      await call();
      return settled(admin, id, status, 120_000);
    };
    // A guest shut down outside novamesh (here: libvirt's ACPI shutdown, as if from inside) is seen
    // at once through libvirt's lifecycle events, not at the next periodic report an hour away.
    const offAt = Date.now();
    await shutdownOutside(uris.get(s.host)!, id);
    const seen = await settled(admin, id, ServerStatus.SERVER_STATUS_SHUTOFF, 15_000);
    const seenAfterMs = Date.now() - offAt;
    assert.ok(seenAfterMs < 15_000, `seen SHUTOFF after ${seenAfterMs} ms`);
    t.diagnostic(`a guest that shut itself down was SHUTOFF in the API after ${seenAfterMs} ms (periodic reports every hour)`);
    assert.equal(seen.powerState, 4, "power state SHUTDOWN");
    await admin.servers.startServer({ id });
    await settled(admin, id, ServerStatus.SERVER_STATUS_ACTIVE, 120_000);
    boots++;
    text = await consoleUntil(id, (t) => count(t, GUEST_READY_LINE) === boots, `boot ${boots} ready`);

    // Stop is a clean ACPI shutdown: the guest sees its power button.
    await act(() => admin.servers.stopServer({ id }), ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.equal(count(await consoleOf(id), "novamesh-test-guest: power button"), 2, "the guest shut down on the ACPI power button");
    for (const step of [
      () => admin.servers.startServer({ id }),
      () => admin.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_SOFT }),
      () => admin.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_HARD }),
    ]) {
      await act(step, ServerStatus.SERVER_STATUS_ACTIVE);
      boots++;
      text = await consoleUntil(id, (t) => count(t, GUEST_READY_LINE) === boots, `boot ${boots} ready`);
    }
    assert.equal(count(text, "novamesh-test-guest: power button"), 3, "the soft reboot was a clean shutdown too");

    // Pause: the guest stops writing; unpause: it writes on.
    await act(() => admin.servers.pauseServer({ id }), ServerStatus.SERVER_STATUS_PAUSED);
    const paused = await consoleOf(id);
    await sleep(3000);
    assert.equal(await consoleOf(id), paused, "a paused guest prints nothing");
    await act(() => admin.servers.unpauseServer({ id }), ServerStatus.SERVER_STATUS_ACTIVE);
    await consoleUntil(id, (t) => t.length > paused.length, "output after unpause");

    // Suspend (managed save) and resume: the same boot goes on, its uptime keeps counting.
    const before = uptime(await consoleOf(id))!;
    await act(() => admin.servers.suspendServer({ id }), ServerStatus.SERVER_STATUS_SUSPENDED);
    await act(() => admin.servers.resumeServer({ id }), ServerStatus.SERVER_STATUS_ACTIVE);
    text = await consoleUntil(id, (t) => (uptime(t) ?? 0) > before, "uptime counting on after resume");
    assert.equal(count(text, GUEST_READY_LINE), boots, "resume restores the guest, it does not boot it");

    // Snapshot: a standalone qcow2 in the image store, checksum and size as recorded.
    const snap = await admin.servers.createServerImage({ id, name: "guest-1-snap" });
    const op = (await admin.operations.waitOperation({ name: snap.operation!.name, timeoutSeconds: 60 })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(op.error));
    const image = (await admin.images.getImage({ id: snap.imageId })).image!;
    assert.equal(image.status, ImageStatus.IMAGE_STATUS_ACTIVE);
    const file = join(dir, "snap.qcow2");
    await downloadImageFile(admin.images.raw, admin.images.metadata(), snap.imageId, file);
    const stored = await hashFile(file);
    assert.deepEqual([image.sizeBytes, image.checksum], [stored.sizeBytes, stored.checksum]);
    await settled(admin, id, ServerStatus.SERVER_STATUS_ACTIVE);

    // Live migration to the other libvirtd: the guest runs on without a reboot.
    const source = s.host;
    const beforeMove = uptime(await consoleOf(id))!;
    const lm = await admin.servers.liveMigrateServer({ id });
    const lmOp = (await admin.operations.waitOperation({ name: lm.operation!.name, timeoutSeconds: 120 })).operation!;
    assert.equal(lmOp.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(lmOp.error));
    const moved = await settled(admin, id, ServerStatus.SERVER_STATUS_ACTIVE, 120_000);
    assert.notEqual(moved.host, source, "it runs on the other host");
    text = await consoleUntil(id, (t) => (uptime(t) ?? 0) > beforeMove, "the guest prints on from the target's console log");
    assert.equal(count(text, GUEST_READY_LINE), 0, "no boot on the target: the running guest was moved");
    assert.deepEqual(await drive(moved.host), { label: "config-2", files: layout }, "the target made the config drive the guest keeps reading");
    const migrations = (await admin.servers.listMigrations({ serverId: id })).migrations;
    assert.ok(migrations.some((m) => m.sourceHost === source && m.targetHost === moved.host), JSON.stringify(migrations));
    assert.deepEqual(await domainsOn(uris.get(source)!, id), [], "the source's libvirtd no longer has the domain");
    assert.deepEqual(await domainsOn(uris.get(moved.host)!, id), [`novamesh-${id}`]);
    await assertCapacityExact(env, admin);

    // Delete: no domain, no overlay, no claim.
    await admin.servers.deleteServer({ id });
    await eventually(async () => (await admin.servers.listServers({})).servers.every((x) => x.id !== id), { what: "server deleted", timeoutMs: 60_000 });
    for (const h of hosts) {
      assert.deepEqual(await domainsOn(uris.get(h)!, id), [], `${h} has no domain left`);
      const left = (await readdir(join(dir, h, "instances")).catch(() => [] as string[])).filter((n) => n !== "_base");
      assert.deepEqual(left, [], `${h} has no instance files left`);
    }
    const usage = await assertCapacityExact(env, admin);
    for (const h of hosts) assert.equal(usage.get(h)?.vms ?? 0, 0, `${h} holds no claim`);
  });
});

/** Shuts the guest of server `id` down through libvirt directly (ACPI), behind novamesh's back. */
async function shutdownOutside(uri: string, id: string): Promise<void> {
  const conn = await loadLibvirt().open(uri);
  try {
    await (await conn.lookupDomainByName(`novamesh-${id}`)).shutdown();
  } finally {
    await conn.close();
  }
}

/** Names of the domains of server `id` that the libvirtd at `uri` has. */
async function domainsOn(uri: string, id: string): Promise<string[]> {
  const conn = await loadLibvirt().open(uri);
  try {
    const names = await Promise.all((await conn.listAllDomains(0)).map((d) => d.getName()));
    return names.filter((n) => n.includes(id));
  } finally {
    await conn.close();
  }
}
