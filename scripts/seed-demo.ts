/**
 * Registers the demo image the README's examples boot, if it is missing.
 * Usage: tsx scripts/seed-demo.ts [address]   (token from NOVAMESH_ADMIN_TOKEN)
 */
import * as grpc from "@grpc/grpc-js";
import { Image, ImageServiceClient, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";

export const DEMO_IMAGE_ID = "c1e4a8f0-5b6d-4f3a-9e2b-7d1c0a9b8e21";

const address = process.argv[2] ?? process.env.NOVAMESH_CONTROLLER ?? "127.0.0.1:8774";
const token = process.env.NOVAMESH_ADMIN_TOKEN;
if (!token) {
  console.error("seed-demo: set NOVAMESH_ADMIN_TOKEN");
  process.exit(2);
}
const md = new grpc.Metadata();
md.set("authorization", `Bearer ${token}`);
const images = new ImageServiceClient(address, grpc.credentials.createInsecure());

images.getImage({ id: DEMO_IMAGE_ID }, md, (err) => {
  if (!err) {
    console.log(`demo image ${DEMO_IMAGE_ID} present`);
    process.exit(0);
  }
  if (err.code !== grpc.status.NOT_FOUND) {
    console.error(`seed-demo: ${err.message}`);
    process.exit(1);
  }
  const image = Image.fromPartial({
    id: DEMO_IMAGE_ID,
    name: "cirros-0.6.2",
    visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC,
    diskFormat: "qcow2",
    containerFormat: "bare",
    minDiskGb: 1,
    properties: { architecture: "x86_64", os_distro: "cirros" },
  });
  images.registerImage({ image, upload: false }, md, (err2) => {
    if (err2) {
      console.error(`seed-demo: ${err2.message}`);
      process.exit(1);
    }
    console.log(`demo image ${DEMO_IMAGE_ID} registered`);
    process.exit(0);
  });
});
