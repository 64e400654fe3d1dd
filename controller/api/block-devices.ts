/**
 * CreateServer's block device mappings, checked: one for now, the root
 * disk (boot index 0) — an existing volume (`volume_id`), or a new one made
 * from an image (`image_id`, `volume_size_gb`, `volume_type`: Nova's source
 * "image", destination "volume"). Each error names the mapping's field.
 */
import type { BlockDeviceMapping } from "../../gen/novamesh/compute/v1/server.js";
import type { RootVolumeRequest } from "../conductor/flows/boot-volume.js";
import type { Flavor } from "../domain/types.js";
import { GIB } from "../domain/volume-ops.js";
import { DEFAULT_VOLUME_TYPE, MAX_VOLUME_GB, VOLUME_TYPE_NAME } from "../domain/volume.js";
import { invalidArgument, notFound } from "../errors.js";
import { getImage } from "../store/catalog.js";
import type { Queryable } from "../store/db.js";
import type { CallContext } from "./rpc.js";
import { isAdmin } from "./rpc.js";
import * as v from "./validate.js";

/** The formats a volume host makes a volume from. */
const VOLUME_IMAGE_FORMATS = new Set(["qcow2", "raw"]);

/** The root volume CreateServer's mappings ask for; null without any. */
export async function rootVolumeOf(q: Queryable, ctx: CallContext, mappings: readonly BlockDeviceMapping[], flavor: Flavor): Promise<RootVolumeRequest | null> {
  if (mappings.length === 0) return null;
  if (mappings.length > 1) throw invalidArgument("block_device_mappings", "one mapping, the root disk (boot_index 0), for now");
  const [m] = mappings as [BlockDeviceMapping];
  const field = (name: string) => `block_device_mappings[0].${name}`;
  if (m.bootIndex !== 0) throw invalidArgument(field("boot_index"), "must be 0 (the root disk): only the root disk may be mapped for now");
  const { deleteOnTermination } = m;
  if (m.volumeId && m.imageId) throw invalidArgument(field("image_id"), "give volume_id or image_id, not both");
  if (!m.imageId) {
    if (m.volumeSizeGb) throw invalidArgument(field("volume_size_gb"), "goes with image_id: an existing volume keeps its size");
    if (m.volumeType) throw invalidArgument(field("volume_type"), "goes with image_id: an existing volume keeps its type");
    return { volumeId: v.uuid(field("volume_id"), m.volumeId), deleteOnTermination };
  }
  const imageId = v.uuid(field("image_id"), m.imageId);
  const image = await getImage(q, imageId, isAdmin(ctx) ? undefined : ctx.principal.projectId);
  if (!image) throw notFound("image", imageId);
  if (image.status !== "active") throw invalidArgument(field("image_id"), `image ${imageId} is ${image.status}, not active`);
  if (!VOLUME_IMAGE_FORMATS.has(image.diskFormat)) throw invalidArgument(field("image_id"), `image ${imageId} is ${image.diskFormat}; a volume is made from a qcow2 or raw image`);
  if (flavor.ramMb < image.minRamMb) throw invalidArgument("flavor_id", `flavor RAM ${flavor.ramMb} MiB is below the image's min_ram ${image.minRamMb} MiB`);
  const needGb = Math.max(1, image.minDiskGb, Math.ceil(image.sizeBytes / GIB));
  if (!Number.isInteger(m.volumeSizeGb) || m.volumeSizeGb < 0) throw invalidArgument(field("volume_size_gb"), `must be a whole number of GiB ≥ 0, got ${m.volumeSizeGb}`);
  const sizeGb = m.volumeSizeGb || needGb;
  if (sizeGb < needGb) throw invalidArgument(field("volume_size_gb"), `must be at least ${needGb} GiB for image ${imageId}`);
  if (sizeGb > MAX_VOLUME_GB) throw invalidArgument(field("volume_size_gb"), `must be at most ${MAX_VOLUME_GB} GiB`);
  const volumeType = m.volumeType || DEFAULT_VOLUME_TYPE;
  if (!VOLUME_TYPE_NAME.test(volumeType)) throw invalidArgument(field("volume_type"), "must be 1-64 letters, digits, '.', '-' or '_'");
  return { image, sizeGb, volumeType, deleteOnTermination };
}
