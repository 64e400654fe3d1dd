import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { before, describe, test } from "node:test";
import { Image, ImageStatus, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { DEMO_IMAGE_ID, DEMO_KERNEL_ID, DEMO_RAMDISK_ID, seedDemo } from "../scripts/seed-demo.js";
import { hashFile } from "../agent/drivers/libvirt/image-store.js";
import { MYSQL_URL } from "./harness.js";
import { stack, type Stack } from "./stack.js";

const run = promisify(execFile);

/** A stand-in for the built test guest: the API does not look inside the bytes. */
async function fakeGuest(dir: string): Promise<string> {
  const guest = join(dir, "guest");
  await mkdir(guest, { recursive: true });
  await writeFile(join(guest, "vmlinuz"), randomBytes(1536 * 1024)); // more than one upload chunk
  await writeFile(join(guest, "initrd.img"), randomBytes(4096));
  await writeFile(join(guest, "disk.qcow2"), randomBytes(2048));
  return guest;
}

async function allImages(fx: Stack): Promise<Image[]> {
  return (await fx.admin.images.listImages({ pageSize: 1000 })).images;
}

/** What the all-in-one's seed once did for the fake driver: the demo id with no bytes. */
async function registerWithoutBytes(fx: Stack): Promise<void> {
  await fx.admin.images.registerImage({
    image: Image.fromPartial({ id: DEMO_IMAGE_ID, name: "cirros-0.6.2", visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC }),
    upload: false,
  });
}

describe("the demo seed: idempotent, whichever driver ran before", () => {
  const fx = stack({ name: "seed-demo", members: [], images: [], removeDir: true, tls: true });
  let guest: string;
  const seed = (databaseUrl?: string) => seedDemo(fx.admin.images.raw, fx.admin.images.metadata(), guest, { databaseUrl });

  before(async () => {
    guest = await fakeGuest(fx.dir);
  });

  test("a run cut short after registering the kernel is resumed into the same images; a second run changes nothing", async () => {
    const { checksum, sizeBytes } = await hashFile(join(guest, "vmlinuz"));
    await fx.admin.images.registerImage({
      image: Image.fromPartial({ id: DEMO_KERNEL_ID, name: "k", visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC, diskFormat: "aki", containerFormat: "aki", checksum, sizeBytes }),
      upload: true,
    });
    const first = await seed();
    assert.deepEqual(first.actions, [`resumed kernel ${DEMO_KERNEL_ID}`, `registered initramfs ${DEMO_RAMDISK_ID}`, `registered demo ${DEMO_IMAGE_ID}`]);
    const demo = (await fx.admin.images.getImage({ id: DEMO_IMAGE_ID })).image!;
    assert.equal(demo.status, ImageStatus.IMAGE_STATUS_ACTIVE);
    assert.ok(demo.hasData);
    assert.equal(demo.properties.kernel_id, DEMO_KERNEL_ID);
    assert.equal(demo.properties.ramdisk_id, DEMO_RAMDISK_ID);
    const again = await seed();
    assert.deepEqual(again.actions, [`kept demo ${DEMO_IMAGE_ID}`]);
    assert.equal((await allImages(fx)).length, 3);
  });

  test("the command line uses the address it is given, not NOVAMESH_CONTROLLER, verifying the controller with --tls-ca", async () => {
    const { stdout } = await run(process.execPath, ["--import", "tsx", fileURLToPath(new URL("../scripts/seed-demo.ts", import.meta.url)), fx.env.address(fx.ctl), "--guest", guest, "--tls-ca", fx.env.tls!.ca], {
      env: { ...process.env, NOVAMESH_ADMIN_TOKEN: fx.env.adminToken, NOVAMESH_CONTROLLER: "127.0.0.1:1" },
      timeout: 60_000,
    });
    assert.match(stdout, new RegExp(`demo image ${DEMO_IMAGE_ID} present`));
    assert.equal((await allImages(fx)).length, 3);
  });

  test("a demo image registered without bytes is replaced with --database, its kernel and initramfs found by checksum", async () => {
    await fx.env.sql("DELETE FROM images WHERE id = ?", [DEMO_IMAGE_ID]);
    await registerWithoutBytes(fx);
    await assert.rejects(seed(), /registered without bytes; ImageService cannot give it bytes/);
    const r = await seed(`${MYSQL_URL}/${fx.env.dbName}`);
    assert.deepEqual(r.actions, [
      "replaced the demo record that was registered without bytes",
      `kept kernel ${DEMO_KERNEL_ID}`,
      `kept initramfs ${DEMO_RAMDISK_ID}`,
      `registered demo ${DEMO_IMAGE_ID}`,
    ]);
    assert.ok((await fx.admin.images.getImage({ id: DEMO_IMAGE_ID })).image!.hasData);
    assert.equal((await allImages(fx)).length, 3);
  });

  test("a deleted demo image (what a failed switch to libvirt once left) is registered again", async () => {
    await fx.env.sql("DELETE FROM images WHERE id = ?", [DEMO_IMAGE_ID]);
    await registerWithoutBytes(fx);
    await fx.admin.images.deleteImage({ id: DEMO_IMAGE_ID });
    await assert.rejects(seed(), /was deleted; ImageService cannot/);
    const r = await seed(`${MYSQL_URL}/${fx.env.dbName}`);
    assert.deepEqual(r.actions, [
      `kept kernel ${DEMO_KERNEL_ID}`,
      `kept initramfs ${DEMO_RAMDISK_ID}`,
      "replaced the demo record that was deleted",
      `registered demo ${DEMO_IMAGE_ID}`,
    ]);
    assert.deepEqual((await seed()).actions, [`kept demo ${DEMO_IMAGE_ID}`]);
    assert.equal((await allImages(fx)).length, 3);
  });

  test("an image with bytes is never touched, even with --database", async () => {
    await assert.doesNotReject(seed(`${MYSQL_URL}/${fx.env.dbName}`));
    assert.equal((await fx.env.sql<{ n: number }>("SELECT COUNT(*) AS n FROM images"))[0]!.n, 3);
  });
});
