/** The agent's volume side: the contract and the backends. */
import type { VolumeBackend } from "./backend.js";
import { FakeVolumeBackend, type FakeVolumeBackendOptions } from "./fake/fake-backend.js";
import { FileVolumeBackend } from "./file/file-backend.js";
import type { FileVolumeBackendOptions } from "./file/options.js";

export type { ExportInfo, PoolCapacity, VolumeBackend, VolumeErrorCode, VolumeImage, VolumeInfo, VolumeSource } from "./backend.js";
export { CLIENT_NAME_PATTERN, VOLUME_ID_PATTERN } from "./backend.js";
export { FakeVolumeBackend, type FakeVolumeBackendOptions } from "./fake/fake-backend.js";
export { parseVolumeFaults, type VolumeFaults } from "./fake/faults.js";
export { FileVolumeBackend } from "./file/file-backend.js";
export type { FileVolumeBackendOptions } from "./file/options.js";
export type { FilePoolConfig } from "./file/file-pool.js";

/** Which volume backend to make, with its options. */
export type VolumeBackendOptions = ({ readonly kind: "fake" } & FakeVolumeBackendOptions) | ({ readonly kind: "file" } & FileVolumeBackendOptions);

/** Makes the volume backend `options.kind` names. */
export function makeVolumeBackend(options: VolumeBackendOptions): VolumeBackend {
  switch (options.kind) {
    case "fake":
      return new FakeVolumeBackend(options);
    case "file":
      return new FileVolumeBackend(options);
    default:
      throw new RangeError(`unknown volume backend "${(options as { kind: string }).kind}"`);
  }
}
