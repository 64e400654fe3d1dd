/**
 * Attached volumes following their server off its host through the whole
 * stack (real MariaDB, NATS, controller; fake hypervisors and a fake volume
 * host, each in its own process): a cold migration or resize exports each
 * volume to the target before the source hands its disk over, the target
 * opens those exports, confirm ends the source's and revert the target's;
 * a shelved server keeps its volumes attached with no export, and an
 * unshelve exports them to its new host; a server booted from a volume
 * moves and shelves with it; an evacuation opens the volumes on the new
 * host and ends the dead host's exports; a volume host that cannot export
 * leaves the server where it was.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Image, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { ServiceState } from "../gen/novamesh/compute/v1/host.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { BlockDeviceMapping, ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { VolumeStatus } from "../gen/novamesh/volume/v1/volume.js";
import { uploadImageFile } from "../scripts/image-files.js";
import { fakeExports, fakeVolumeHost } from "./agents.js";
import { eventually, operationError, volumeSteps, withOnlyHost } from "./harness.js";
import { stack } from "./stack.js";

describe("volumes through cold migration, resize, shelve and evacuation", () => {
  const fx = stack({
    name: "volume-cold-moves",
    members: ["alice"],
    flavor: "m1.tiny",
    agents: ({ id }) => [{ host: `cm${id}-a` }, { host: `cm${id}-b` }, { host: `cm${id}-c` }, fakeVolumeHost(`cmv${id}`)],
  });
  const { env, alice, admin, dir, agents: hosts, settled, bootOn } = fx;
  const [A, B, C] = fx.hosts as [string, string, string];
  const volumeHost = `cmv${env.id}`;

  const wait = async (name: string) => (await admin.operations.waitOperation({ name, timeoutSeconds: 30 })).operation!;
  const succeeded = async (pending: Promise<{ operation?: { name: string } }>) => {
    const op = await wait((await pending).operation!.name);
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(op.error));
  };
  /** The exports the volume host serves for `volumeId` (the fake backend's state): [client, export name]. */
  const exports = async (volumeId: string): Promise<string[][]> =>
    (await fakeExports(dir, volumeHost))
      .filter((x) => x.volumeId === volumeId)
      .map((x) => [x.client, x.exportName])
      .sort();
  /** Waits until the volume host serves exactly `clients` for the volume. */
  const servedTo = (volumeId: string, ...clients: string[]) =>
    eventually(async () => ((await exports(volumeId)).map(([c]) => c).join() === clients.sort().join() ? true : undefined), {
      what: `volume ${volumeId} exported to ${clients.join(", ") || "no host"}`,
    });
  /** The server's volume disks on `host`'s hypervisor: [attachment, device, export name]. */
  const disks = async (serverId: string, host: string) =>
    ((await hosts.domains(host))[serverId]?.volumes ?? []).map((d) => [d.attachmentId, d.device, d.connection.exportName]).sort();
  const volumeOf = async (id: string) => (await alice.volumes.getVolume({ id })).volume!;

  const { volume, attach } = volumeSteps(alice, admin);
  /** A public raw image with bytes, for volumes servers boot from. */
  async function bootImage(): Promise<string> {
    const file = join(dir, "cm-image.img");
    await writeFile(file, randomBytes(256 * 1024));
    const image = Image.fromPartial({ name: "cm-image", diskFormat: "raw", containerFormat: "bare", visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC });
    const made = (await admin.images.registerImage({ image, upload: true })).image!;
    await uploadImageFile(admin.images.raw, admin.images.metadata(), made.id, file);
    return made.id;
  }
  /** A server on `host` booted from a new volume made from an image. */
  async function bootFromVolumeOn(host: string, name: string): Promise<{ id: string; volumeId: string }> {
    const volumeId = await volume(`${name}-root`, await bootImage());
    const s = await withOnlyHost(admin, host, async () => {
      const created = await alice.servers.createServer({ name, flavorId: "m1.tiny", blockDeviceMappings: [BlockDeviceMapping.fromPartial({ volumeId, bootIndex: 0, deleteOnTermination: false })] });
      return settled(created.server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    });
    assert.equal(s.host, host);
    return { id: s.id, volumeId };
  }

  test("a cold migration opens the volume through an export made for the target; confirm ends the source's, and a resize reverted opens the source's again", async () => {
    const s = await bootOn(A, "cm-moving");
    const v = await volume("cm-1");
    const a = await attach(s.id, v);
    assert.deepEqual(await disks(s.id, A), [[a, "vdb", a]]);

    await succeeded(admin.servers.migrateServer({ id: s.id, host: B }));
    assert.equal((await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE)).host, B);
    const [action] = (await admin.servers.listServerActions({ serverId: s.id })).actions;
    assert.deepEqual(action!.events.map((e) => `${e.name}@${e.host}`), [`schedule@${B}`, `volume_export@${volumeHost}`, `compute_resize_instance@${A}`, `compute_finish_resize@${B}`]);
    // B opens an export of its own at the same device; A's stays for a revert until the move is confirmed.
    const onB = await disks(s.id, B);
    assert.deepEqual(onB.map(([x, d]) => [x, d]), [[a, "vdb"]]);
    assert.notEqual(onB[0]![2], a, "a new export, not the source's");
    assert.deepEqual((await exports(v)).map(([c]) => c), [A, B].sort());

    await succeeded(alice.servers.confirmResize({ id: s.id }));
    assert.equal((await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE)).host, B);
    await servedTo(v, B);
    assert.deepEqual(await exports(v), [[B, onB[0]![2]]]);
    assert.ok(!(s.id in (await hosts.domains(A))), "the source's copy is gone");
    const att = (await volumeOf(v)).attachments;
    assert.deepEqual([(await volumeOf(v)).status, att.map((x) => [x.serverId, x.device])], [VolumeStatus.VOLUME_STATUS_IN_USE, [[s.id, "vdb"]]]);

    // A resize to another host (A or C), reverted: B's copy opens B's export again, the target's export ends.
    await succeeded(alice.servers.resizeServer({ id: s.id, flavorId: "m1.small" }));
    const target = (await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE)).host;
    assert.notEqual(target, B);
    assert.deepEqual((await disks(s.id, target)).map(([x, d]) => [x, d]), [[a, "vdb"]]);
    await succeeded(alice.servers.revertResize({ id: s.id }));
    assert.equal((await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE)).host, B);
    assert.deepEqual(await disks(s.id, B), onB);
    await servedTo(v, B);

    // Still attached as on any server: a detach frees it.
    await succeeded(alice.servers.detachVolume({ id: s.id, volumeId: v }));
    await servedTo(v);
    assert.equal((await volumeOf(v)).status, VolumeStatus.VOLUME_STATUS_AVAILABLE);
  });

  test("a server booted from a volume is cold-migrated with it: no disk is handed over, the target boots from an export made for it", async () => {
    const { id, volumeId } = await bootFromVolumeOn(A, "cm-bfv");
    const [root] = (await volumeOf(volumeId)).attachments;
    await succeeded(admin.servers.migrateServer({ id, host: C }));
    assert.equal((await settled(id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE)).host, C);
    assert.deepEqual((await disks(id, C)).map(([x, d]) => [x, d]), [[root!.id, "vda"]]);
    // (A source not told it has no local disk to hand over refuses the move: the drivers' contract.)
    await succeeded(alice.servers.confirmResize({ id }));
    await servedTo(volumeId, C);
    await succeeded(alice.servers.deleteServer({ id }));
    await servedTo(volumeId);
    assert.equal((await volumeOf(volumeId)).status, VolumeStatus.VOLUME_STATUS_AVAILABLE);
  });

  test("a shelved server keeps its volumes attached with no export; unshelved, its new host opens exports made for it", async () => {
    const s = await bootOn(A, "cm-shelved");
    const v = await volume("cm-2");
    const a = await attach(s.id, v);
    await succeeded(alice.servers.shelveServer({ id: s.id }));
    await settled(s.id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    await servedTo(v);
    const shelved = await volumeOf(v);
    assert.deepEqual([shelved.status, shelved.attachments.map((x) => [x.serverId, x.device])], [VolumeStatus.VOLUME_STATUS_IN_USE, [[s.id, "vdb"]]]);

    await succeeded(alice.servers.unshelveServer({ id: s.id }));
    const back = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const [action] = (await admin.servers.listServerActions({ serverId: s.id })).actions;
    assert.deepEqual(action!.events.map((e) => e.name), ["schedule", "volume_export", "compute_spawn"]);
    const on = await disks(s.id, back.host);
    assert.deepEqual(on.map(([x, d]) => [x, d]), [[a, "vdb"]]);
    assert.deepEqual(await exports(v), [[back.host, on[0]![2]]]);

    // Booted from a volume: shelved without a snapshot, unshelved from the volume.
    const bfv = await bootFromVolumeOn(B, "cm-bfv-shelved");
    await succeeded(alice.servers.shelveServer({ id: bfv.id }));
    const off = await settled(bfv.id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    assert.equal(off.imageId, (await admin.servers.getServer({ id: bfv.id })).server!.imageId);
    const images = (await admin.images.listImages({})).images.map((i) => i.name);
    assert.ok(!images.includes("cm-bfv-shelved-shelved"), "no snapshot of a volume-booted server");
    await servedTo(bfv.volumeId);
    await succeeded(alice.servers.unshelveServer({ id: bfv.id }));
    const up = await settled(bfv.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual((await disks(bfv.id, up.host)).map(([, d]) => d), ["vda"]);
    await servedTo(bfv.volumeId, up.host);
  });

  test("a volume host that cannot export to the target leaves a migrating server on its source, its export as it was", async () => {
    const s = await bootOn(A, "cm-stays");
    const v = await volume("cm-3");
    const a = await attach(s.id, v);
    await hosts.stop(volumeHost);
    const faults = JSON.stringify({ export: { volumeId: v, error: "the target's network is unreachable" } });
    hosts.restart(volumeHost, fakeVolumeHost(volumeHost, { extra: ["--fake-volume-faults", faults] }));
    try {
      const op = await wait((await admin.servers.migrateServer({ id: s.id, host: B })).operation!.name);
      assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
      assert.match(operationError(op).message, /network is unreachable/);
      assert.equal((await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE)).host, A);
      assert.deepEqual(await disks(s.id, A), [[a, "vdb", a]]);
      assert.ok(!(s.id in (await hosts.domains(B))));
      await servedTo(v, A);
      assert.equal((await volumeOf(v)).status, VolumeStatus.VOLUME_STATUS_IN_USE);
    } finally {
      await hosts.stop(volumeHost);
      hosts.restart(volumeHost, fakeVolumeHost(volumeHost));
    }
  });

  test("an evacuation opens the volumes on the new host and ends the dead host's exports", async () => {
    const s = await bootOn(C, "cm-evacuated");
    const v = await volume("cm-4");
    const a = await attach(s.id, v);
    await hosts.stop(C, "SIGKILL");
    await eventually(async () => ((await admin.hosts.listServices({ host: C })).services[0]?.state === ServiceState.SERVICE_STATE_DOWN ? true : undefined), {
      what: `${C} down`,
      timeoutMs: 30_000,
    });
    await succeeded(admin.servers.evacuateServer({ id: s.id }));
    const moved = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.notEqual(moved.host, C);
    const on = await disks(s.id, moved.host);
    assert.deepEqual(on.map(([x, d]) => [x, d]), [[a, "vdb"]]);
    // The dead host can no longer open the volume: only the new host's export is served.
    await servedTo(v, moved.host);
    assert.deepEqual(await exports(v), [[moved.host, on[0]![2]]]);
  });
});
