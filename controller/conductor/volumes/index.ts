/** The volume flows' rows, assembled into complete tables, and their calls. */
import type { VolumeTask } from "../../domain/volume.js";
import type { VolumeOpKind } from "../../domain/volume-ops.js";
import { createResults, createTimeouts } from "./create.js";
import { deleteResults, deleteTimeouts } from "./delete.js";
import { extendResults, extendTimeouts } from "./extend.js";
import type { VolumeResultRule, VolumeTimeoutRule } from "./flow.js";
import { snapshotResults } from "./snapshots.js";

export { createVolume } from "./create.js";
export type { NewVolumeRequest } from "./make.js";
export { deleteVolume } from "./delete.js";
export { extendVolume } from "./extend.js";
export { createSnapshot, deleteSnapshot, visibleSnapshot } from "./snapshots.js";
export { visibleVolume, type VolumeAccepted } from "./frame.js";

export const VOLUME_RESULT_RULES: Readonly<Record<VolumeOpKind, VolumeResultRule>> = { ...createResults, ...deleteResults, ...extendResults, ...snapshotResults };

export const VOLUME_TIMEOUT_RULES: Readonly<Record<VolumeTask, VolumeTimeoutRule>> = { ...createTimeouts, ...deleteTimeouts, ...extendTimeouts };
