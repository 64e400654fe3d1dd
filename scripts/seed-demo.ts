/**
 * Registers the demo image the README's examples boot, if it is missing.
 *
 *   tsx scripts/seed-demo.ts [address]                 metadata only (fake driver)
 *   tsx scripts/seed-demo.ts [address] --guest DIR     the test guest of
 *       scripts/build-test-guest.sh DIR, its kernel, initramfs and disk
 *       uploaded (libvirt driver: the demo image really boots)
 *
 * The token comes from NOVAMESH_ADMIN_TOKEN. A demo image without bytes
 * (left by a fake-driver run) is replaced when a guest is given.
 */
import * as grpc from "@grpc/grpc-js";
import { Image, ImageServiceClient, ImageVisibility, type GetImageResponse } from "../gen/novamesh/compute/v1/image.js";
import { registerTestGuest } from "./test-guest.js";

export const DEMO_IMAGE_ID = "c1e4a8f0-5b6d-4f3a-9e2b-7d1c0a9b8e21";

const args = process.argv.slice(2);
const guestAt = args.indexOf("--guest");
const guest = guestAt >= 0 ? args[guestAt + 1] : undefined;
if (guestAt >= 0 && !guest) {
  console.error("seed-demo: --guest needs a directory");
  process.exit(2);
}
const address = args.filter((_, i) => i !== guestAt && i !== guestAt + 1)[0] ?? process.env.NOVAMESH_CONTROLLER ?? "127.0.0.1:8774";
const token = process.env.NOVAMESH_ADMIN_TOKEN;
if (!token) {
  console.error("seed-demo: set NOVAMESH_ADMIN_TOKEN");
  process.exit(2);
}
const md = new grpc.Metadata();
md.set("authorization", `Bearer ${token}`);
const images = new ImageServiceClient(address, grpc.credentials.createInsecure());

function call<Req, Res>(fn: (req: Req, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => fn.call(images, req, md, (err, res) => (err ? reject(err) : resolve(res!))));
}

async function existing(): Promise<Image | undefined> {
  try {
    return (await call<{ id: string }, GetImageResponse>(images.getImage, { id: DEMO_IMAGE_ID })).image;
  } catch (err) {
    if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return undefined;
    throw err;
  }
}

async function main(): Promise<void> {
  const image = await existing();
  if (image && (image.hasData || !guest)) {
    console.log(`demo image ${DEMO_IMAGE_ID} present (${image.name})`);
    return;
  }
  if (guest) {
    if (image) await call(images.deleteImage, { id: DEMO_IMAGE_ID }); // registered without bytes before
    await registerTestGuest(images, md, guest, { imageId: DEMO_IMAGE_ID, name: "novamesh-test-guest" });
    console.log(`demo image ${DEMO_IMAGE_ID} registered: the test guest from ${guest}, uploaded`);
    return;
  }
  await call(images.registerImage, {
    image: Image.fromPartial({
      id: DEMO_IMAGE_ID,
      name: "cirros-0.6.2",
      visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC,
      diskFormat: "qcow2",
      containerFormat: "bare",
      minDiskGb: 1,
      properties: { architecture: "x86_64", os_distro: "cirros" },
    }),
    upload: false,
  });
  console.log(`demo image ${DEMO_IMAGE_ID} registered`);
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`seed-demo: ${err.message}`);
    process.exit(1);
  },
);
