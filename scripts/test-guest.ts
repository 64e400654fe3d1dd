/**
 * Registers the tiny test guest (`scripts/build-test-guest.sh DIR`) as
 * three images with their bytes uploaded: the kernel ("aki"), the initramfs
 * ("ari") and a bootable disk image whose properties name the other two
 * (Glance's kernel_id / ramdisk_id / os_command_line), so the libvirt
 * driver boots it directly. Used by the all-in-one and the real-libvirt tests.
 */
import { join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { Image, ImageVisibility, type ImageServiceClient } from "../gen/novamesh/compute/v1/image.js";
import { hashFile } from "../agent/drivers/libvirt/image-store.js";
import { uploadImageFile } from "./image-files.js";

/** The line the guest prints on its serial console once it is up. */
export const GUEST_READY_LINE = "novamesh-test-guest: ready";

/** The three images of the test guest. */
export interface TestGuestImages {
  readonly kernelId: string;
  readonly ramdiskId: string;
  /** The image to boot servers from. */
  readonly imageId: string;
}

function register(client: ImageServiceClient, md: grpc.Metadata, image: Image): Promise<Image> {
  return new Promise((resolve, reject) =>
    client.registerImage({ image, upload: true }, md, (err, res) => (err ? reject(err) : resolve(res!.image!))),
  );
}

/**
 * Registers and uploads the guest in `dir` (vmlinuz, initrd.img,
 * disk.qcow2). `imageId` fixes the bootable image's id (the others get new
 * ids); `name` prefixes the images' names.
 */
export async function registerTestGuest(
  client: ImageServiceClient,
  md: grpc.Metadata,
  dir: string,
  opts: { name?: string; imageId?: string } = {},
): Promise<TestGuestImages> {
  const name = opts.name ?? "novamesh-test-guest";
  const upload = async (file: string, image: Partial<Image>): Promise<string> => {
    const path = join(dir, file);
    const { checksum, sizeBytes } = await hashFile(path);
    const registered = await register(
      client,
      md,
      Image.fromPartial({ visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC, checksum, sizeBytes, ...image }),
    );
    await uploadImageFile(client, md, registered.id, path, { checksum });
    return registered.id;
  };
  const kernelId = await upload("vmlinuz", { name: `${name}-kernel`, diskFormat: "aki", containerFormat: "aki" });
  const ramdiskId = await upload("initrd.img", { name: `${name}-initrd`, diskFormat: "ari", containerFormat: "ari" });
  const imageId = await upload("disk.qcow2", {
    ...(opts.imageId ? { id: opts.imageId } : {}),
    name,
    diskFormat: "qcow2",
    containerFormat: "bare",
    minDiskGb: 1,
    properties: {
      architecture: "x86_64",
      kernel_id: kernelId,
      ramdisk_id: ramdiskId,
      os_command_line: "console=ttyS0 quiet",
    },
  });
  return { kernelId, ramdiskId, imageId };
}
