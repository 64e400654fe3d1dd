/**
 * Makes sure the demo image the README's examples boot is there, with its
 * bytes: the tiny test guest of scripts/build-test-guest.sh DIR (a kernel, an
 * initramfs and a disk image whose properties name the other two).
 *
 *   tsx scripts/seed-demo.ts [ADDRESS] [--guest DIR] [--database URL] [--tls-ca FILE | --plaintext]
 *
 * ADDRESS is the controller's gRPC address (default: NOVAMESH_CONTROLLER,
 * else 127.0.0.1:8774); DIR the built guest (default .state/test-guest). The
 * token comes from NOVAMESH_ADMIN_TOKEN. The controller is reached over TLS,
 * its certificate verified with the CA in FILE (default: the system's CAs);
 * --plaintext (or NOVAMESH_PLAINTEXT=1) for a controller run with --plaintext.
 *
 * Safe to run any number of times, whichever driver the agent uses (the fake
 * driver ignores the bytes, the libvirt driver boots them): an image that
 * already has its bytes is kept; the kernel and the initramfs are found by
 * their checksum, else registered under fixed ids, so no run adds another
 * pair; an upload that was cut short is resumed into the same image.
 *
 * ImageService cannot give bytes to an image that was registered without
 * them (earlier versions of this script did that for the fake driver), nor
 * register an id again once it was deleted. With --database (the
 * controller's database URL, e.g. mysql://root@127.0.0.1:3306/novamesh) such
 * a demo record, and only that one, is removed from the images table and the
 * image registered again through the API; without it the script says so and
 * fails.
 */
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import mysql from "mysql2/promise";
import { Image, ImageServiceClient, ImageStatus, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { hashFile } from "../agent/drivers/libvirt/image-store.js";
import { uploadImageFile } from "./image-files.js";
import { adminConnection, runScript } from "./admin-cli.js";

export const DEMO_IMAGE_ID = "c1e4a8f0-5b6d-4f3a-9e2b-7d1c0a9b8e21";
/** Where the demo's kernel and initramfs are registered when no image with their bytes exists yet. */
export const DEMO_KERNEL_ID = "c1e4a8f0-5b6d-4f3a-9e2b-7d1c0a9b8e22";
export const DEMO_RAMDISK_ID = "c1e4a8f0-5b6d-4f3a-9e2b-7d1c0a9b8e23";
const NAME = "novamesh-test-guest";

/** What seedDemo did with each image: kept it, uploaded into it, or registered and uploaded it. */
export interface SeedResult {
  readonly kernelId: string;
  readonly ramdiskId: string;
  readonly imageId: string;
  readonly actions: readonly string[];
}

export interface SeedOptions {
  /** The controller's database: lets a demo record without bytes (see above) be replaced. */
  readonly databaseUrl?: string;
  /** Progress lines (default: none). */
  readonly log?: (line: string) => void;
}

function errCode(err: unknown): number | undefined {
  return (err as grpc.ServiceError | undefined)?.code;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * Makes the demo image (DEMO_IMAGE_ID) the test guest in `guestDir`, with
 * its bytes, reusing whatever earlier runs left. Returns the three ids.
 */
export async function seedDemo(client: ImageServiceClient, md: grpc.Metadata, guestDir: string, opts: SeedOptions = {}): Promise<SeedResult> {
  const log = opts.log ?? (() => {});
  const actions: string[] = [];
  const done = <Res>(ok: (r: Res) => void, fail: (e: unknown) => void) => (err: grpc.ServiceError | null, res?: Res) => (err ? fail(err) : ok(res!));
  const get = async (id: string): Promise<Image | undefined> => {
    try {
      return await new Promise<Image | undefined>((ok, fail) => client.getImage({ id }, md, done((r) => ok(r.image), fail)));
    } catch (err) {
      if (errCode(err) === grpc.status.NOT_FOUND) return undefined;
      throw err;
    }
  };
  const register = (image: Partial<Image>): Promise<Image> =>
    new Promise((ok, fail) =>
      client.registerImage(
        { image: Image.fromPartial({ visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC, ...image }), upload: true },
        md,
        done((r) => ok(r.image!), fail),
      ),
    );
  const listPage = (pageToken: string): Promise<{ images: Image[]; nextPageToken: string }> =>
    new Promise((ok, fail) => client.listImages({ pageSize: 1000, pageToken }, md, done(ok, fail)));
  const hasBytes = (i: Image | undefined): boolean => i?.status === ImageStatus.IMAGE_STATUS_ACTIVE && i.hasData;
  const present = async (id: string | undefined): Promise<boolean> => Boolean(id) && hasBytes(await get(id!));
  const waiting = (i: Image | undefined): boolean => i?.status === ImageStatus.IMAGE_STATUS_QUEUED || i?.status === ImageStatus.IMAGE_STATUS_SAVING;

  const upload = async (image: Image, path: string, what: string, checksum: string): Promise<void> => {
    const { size } = await stat(path);
    log(`uploading the ${what} (${mib(size)}) into image ${image.id}`);
    const started = Date.now();
    try {
      await uploadImageFile(client, md, image.id, path, { checksum });
    } catch (err) {
      if (errCode(err) === grpc.status.ABORTED) {
        throw new Error(`image ${image.id} (${what}) is being uploaded by another client; try again when it is done (or in two minutes, if that client stopped)`);
      }
      throw err;
    }
    log(`uploaded the ${what} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  };

  /** Every image an admin sees (a few pages at most on a demo controller). */
  const allImages = async (): Promise<Image[]> => {
    const out: Image[] = [];
    let pageToken = "";
    do {
      const res = await listPage(pageToken);
      out.push(...res.images);
      pageToken = res.nextPageToken;
    } while (pageToken);
    return out;
  };

  /**
   * The kernel or the initramfs: an image that already has these bytes, else
   * the one at `stableId` (registered, or resumed when an upload was cut short),
   * else a new one when `stableId` holds other bytes.
   */
  const part = async (file: string, what: string, stableId: string, format: "aki" | "ari"): Promise<string> => {
    const path = join(guestDir, file);
    const { checksum, sizeBytes } = await hashFile(path);
    const same = (await allImages()).find((i) => hasBytes(i) && i.checksum === checksum && i.diskFormat === format);
    if (same) {
      actions.push(`kept ${what} ${same.id}`);
      return same.id;
    }
    let image = await get(stableId);
    if (!(waiting(image) && (!image!.checksum || image!.checksum === checksum))) {
      image = undefined;
      try {
        image = await register({ id: stableId, name: `${NAME}-${format === "aki" ? "kernel" : "initrd"}`, diskFormat: format, containerFormat: format, checksum, sizeBytes });
      } catch (err) {
        if (errCode(err) !== grpc.status.ALREADY_EXISTS) throw err;
      }
      // The fixed id holds other bytes, or was deleted: any id will do.
      image ??= await register({ name: `${NAME}-${format === "aki" ? "kernel" : "initrd"}`, diskFormat: format, containerFormat: format, checksum, sizeBytes });
      actions.push(`registered ${what} ${image.id}`);
    } else {
      actions.push(`resumed ${what} ${image!.id}`);
    }
    await upload(image!, path, what, checksum);
    return image!.id;
  };

  /**
   * Removes the demo record that ImageService cannot repair (registered without
   * bytes, or deleted): only that id, only when it has no bytes.
   */
  const dropStaleDemo = async (why: string): Promise<void> => {
    if (!opts.databaseUrl) {
      throw new Error(
        `demo image ${DEMO_IMAGE_ID} ${why}; ImageService cannot give it bytes or register its id again. ` +
          `Give --database with the controller's database URL to replace that record, or use a fresh database`,
      );
    }
    const conn = await mysql.createConnection(opts.databaseUrl);
    try {
      const [res] = await conn.query("DELETE FROM images WHERE id = ? AND has_data = 0", [DEMO_IMAGE_ID]);
      if ((res as { affectedRows: number }).affectedRows !== 1) throw new Error(`demo image ${DEMO_IMAGE_ID} ${why}, and no such record without bytes was found in ${opts.databaseUrl}`);
    } finally {
      await conn.end();
    }
    log(`demo image ${DEMO_IMAGE_ID} ${why}: its record was removed, registering it again with the test guest's bytes`);
    actions.push(`replaced the demo record that ${why}`);
  };

  let demo = await get(DEMO_IMAGE_ID);
  if (hasBytes(demo)) {
    const props = demo!.properties;
    for (const id of [props.kernel_id, props.ramdisk_id]) if (id !== undefined && !(await present(id))) log(`warning: the demo image names image ${id}, which is gone or has no bytes; the libvirt driver cannot boot it`);
    actions.push(`kept demo ${DEMO_IMAGE_ID}`);
    return { kernelId: props.kernel_id ?? "", ramdiskId: props.ramdisk_id ?? "", imageId: DEMO_IMAGE_ID, actions };
  }
  if (demo && !waiting(demo)) {
    await dropStaleDemo("was registered without bytes");
    demo = undefined;
  }

  const disk = join(guestDir, "disk.qcow2");
  const { checksum, sizeBytes } = await hashFile(disk);
  let kernelId: string;
  let ramdiskId: string;
  if (demo) {
    // An upload of the demo image was cut short: its properties name its kernel and initramfs.
    kernelId = demo.properties.kernel_id ?? "";
    ramdiskId = demo.properties.ramdisk_id ?? "";
    if (!(await present(kernelId))) kernelId = await part("vmlinuz", "kernel", kernelId || DEMO_KERNEL_ID, "aki");
    if (!(await present(ramdiskId))) ramdiskId = await part("initrd.img", "initramfs", ramdiskId || DEMO_RAMDISK_ID, "ari");
    if (kernelId !== demo.properties.kernel_id || ramdiskId !== demo.properties.ramdisk_id) {
      throw new Error(`demo image ${DEMO_IMAGE_ID} is queued naming kernel ${demo.properties.kernel_id} and initramfs ${demo.properties.ramdisk_id}, which could not be restored`);
    }
    if (demo.checksum && demo.checksum !== checksum) throw new Error(`demo image ${DEMO_IMAGE_ID} is queued for other bytes (checksum ${demo.checksum}) than ${disk}`);
    actions.push(`resumed demo ${DEMO_IMAGE_ID}`);
  } else {
    kernelId = await part("vmlinuz", "kernel", DEMO_KERNEL_ID, "aki");
    ramdiskId = await part("initrd.img", "initramfs", DEMO_RAMDISK_ID, "ari");
    const image: Partial<Image> = {
      id: DEMO_IMAGE_ID,
      name: NAME,
      diskFormat: "qcow2",
      containerFormat: "bare",
      minDiskGb: 1,
      checksum,
      sizeBytes,
      properties: { architecture: "x86_64", kernel_id: kernelId, ramdisk_id: ramdiskId, os_command_line: "console=ttyS0 quiet" },
    };
    try {
      demo = await register(image);
    } catch (err) {
      if (errCode(err) !== grpc.status.ALREADY_EXISTS) throw err;
      await dropStaleDemo("was deleted");
      demo = await register(image);
    }
    actions.push(`registered demo ${DEMO_IMAGE_ID}`);
  }
  await upload(demo, disk, "disk image", checksum);
  return { kernelId, ramdiskId, imageId: DEMO_IMAGE_ID, actions };
}

const USAGE = "tsx scripts/seed-demo.ts [ADDRESS] [--guest DIR] [--database URL] [--tls-ca FILE | --plaintext]";

async function main(): Promise<void> {
  let guest = fileURLToPath(new URL("../.state/test-guest", import.meta.url));
  let databaseUrl: string | undefined;
  const c = adminConnection(process.argv.slice(2), { "--guest": (v) => (guest = resolve(v)), "--database": (v) => (databaseUrl = v) });
  const client = new ImageServiceClient(c.address, c.credentials, c.channelOptions);
  const r = await seedDemo(client, c.metadata, guest, { databaseUrl, log: (line) => console.log(`seed-demo: ${line}`) });
  client.close();
  const fresh = r.actions.some((a) => !a.startsWith("kept"));
  console.log(`seed-demo: demo image ${r.imageId} ${fresh ? "ready" : "present"}: the test guest (kernel ${r.kernelId}, initramfs ${r.ramdiskId}) at ${c.address}`);
}

runScript(import.meta.url, "seed-demo", USAGE, main);
