/**
 * The flows, one file per operation family, and the tables the conductor's
 * dispatchers read, assembled from the flows' own rows. Each table is
 * checked to be complete: an op kind, action or task without a flow does
 * not compile.
 */
import type { OpKind } from "../../domain/ops.js";
import type { ServerAction, TaskState, VmState } from "../../domain/states.js";
import type { MigrationType } from "../../domain/types.js";
import type { ActionRule, MovePlacement, ResultRule, TimeoutRule } from "../flow.js";
import * as bootVolume from "./boot-volume.js";
import * as build from "./build.js";
import * as create from "./create.js";
import * as deletion from "./delete.js";
import * as image from "./image.js";
import * as interfaces from "./interfaces.js";
import * as liveMigration from "./live-migration.js";
import * as lock from "./lock.js";
import * as power from "./power.js";
import * as rebuild from "./rebuild.js";
import * as resize from "./resize.js";
import * as volumeExtend from "./volume-extend.js";
import * as volumeRebuild from "./volume-rebuild.js";
import * as volumes from "./volumes.js";

export { build, create, deletion, image, interfaces, liveMigration, lock, power, rebuild, resize, volumeExtend, volumes };

/** Each action's row: where it may start from, the task it sets. */
export const ACTION_RULES: Readonly<Record<ServerAction, ActionRule>> = {
  ...power.actions,
  ...lock.actions,
  ...deletion.actions,
  ...resize.actions,
  ...liveMigration.actions,
  ...rebuild.actions,
  ...image.actions,
  ...interfaces.actions,
  ...volumes.actions,
  ...volumeExtend.actions,
} satisfies Record<ServerAction, ActionRule>;

/** vm_states each action may start from (Nova's check_instance_state). */
export const ALLOWED_FROM: Readonly<Record<ServerAction, ReadonlySet<VmState>>> = Object.fromEntries(
  Object.entries(ACTION_RULES).map(([a, r]) => [a, new Set(r.from)]),
) as unknown as Record<ServerAction, ReadonlySet<VmState>>;

/**
 * One op kind's rows from several flows, each for its own tasks: the
 * result goes to the row whose tasks hold the server's task.
 */
function joined(...rows: readonly ResultRule[]): ResultRule {
  return {
    tasks: rows.flatMap((row) => row.tasks),
    apply: async (r) => {
      const row = rows.find((x) => r.inst.taskState !== null && x.tasks.includes(r.inst.taskState));
      await row?.apply?.(r);
    },
  };
}

/** What each op kind's result may finish and does. */
export const RESULT_RULES: Readonly<Record<OpKind, ResultRule>> = {
  ...build.results,
  ...power.results,
  ...deletion.results,
  ...resize.results,
  ...liveMigration.results,
  ...rebuild.results,
  ...image.results,
  ...interfaces.results,
  ...volumes.results,
  ...volumeExtend.results,
  ...volumeRebuild.results,
  // A rebuild of a volume-booted server stops it first.
  power_off: joined(power.results.power_off, volumeRebuild.sharedResults.power_off),
  // Attach exports a volume to its server's host; a move (live or cold migration, resize, evacuation), to the target too; a build, to its host.
  export_volume: joined(
    volumes.results.export_volume,
    liveMigration.sharedResults.export_volume,
    resize.sharedResults.export_volume,
    rebuild.sharedResults.export_volume,
    build.sharedResults.export_volume,
  ),
} satisfies Record<OpKind, ResultRule>;

/** What the reaper does with each task past its deadline. */
export const TIMEOUT_RULES: Readonly<Record<TaskState, TimeoutRule>> = {
  ...build.timeouts,
  ...power.timeouts,
  ...deletion.timeouts,
  ...resize.timeouts,
  ...liveMigration.timeouts,
  ...rebuild.timeouts,
  ...image.timeouts,
  ...interfaces.timeouts,
  ...volumes.timeouts,
  ...volumeExtend.timeouts,
  ...bootVolume.timeouts,
} satisfies Record<TaskState, TimeoutRule>;

/** How each kind of move starts once placement claimed its target. */
export const MOVE_PLACEMENT: Readonly<Record<MigrationType, MovePlacement>> = {
  RESIZE: resize.placed,
  MIGRATION: resize.placed,
  LIVE_MIGRATION: liveMigration.placed,
  EVACUATION: rebuild.placed,
};
