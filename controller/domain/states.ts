/**
 * Nova's three state axes, the user-facing status derived from them, and
 * how long each task may run by default. Which action may start from which
 * state, and the task it sets, are the flows' rows (conductor/flows/).
 */
export const VM_STATES = [
  "BUILDING",
  "ACTIVE",
  "STOPPED",
  "PAUSED",
  "SUSPENDED",
  "RESIZED",
  "SHELVED_OFFLOADED",
  "ERROR",
  "DELETED",
] as const;
export type VmState = (typeof VM_STATES)[number];

export const TASK_STATES = [
  "SCHEDULING",
  "SPAWNING",
  "POWERING_OFF",
  "POWERING_ON",
  "REBOOTING",
  "REBOOTING_HARD",
  "DELETING",
  "PAUSING",
  "UNPAUSING",
  "SUSPENDING",
  "RESUMING",
  "RESIZE_PREP",
  "RESIZE_MIGRATING",
  "RESIZE_FINISH",
  "RESIZE_CONFIRMING",
  "RESIZE_REVERTING",
  "MIGRATING",
  "REBUILDING",
  "REBUILD_SPAWNING",
  "IMAGE_SNAPSHOT",
  "SHELVING",
  "UNSHELVING",
  "IMAGE_UPLOADING",
  "SHELVING_IMAGE_UPLOADING",
  "SHELVING_OFFLOADING",
  "INTERFACE_ATTACHING",
  "INTERFACE_DETACHING",
  "VOLUME_ATTACHING",
  "VOLUME_DETACHING",
  "VOLUME_EXTENDING",
  "BLOCK_DEVICE_MAPPING",
] as const;
export type TaskState = (typeof TASK_STATES)[number];

export const POWER_STATES = ["NOSTATE", "RUNNING", "PAUSED", "SHUTDOWN", "CRASHED", "SUSPENDED"] as const;
export type PowerState = (typeof POWER_STATES)[number];

export const SERVER_STATUSES = [
  "BUILD",
  "ACTIVE",
  "SHUTOFF",
  "REBOOT",
  "HARD_REBOOT",
  "PAUSED",
  "SUSPENDED",
  "VERIFY_RESIZE",
  "SHELVED_OFFLOADED",
  "ERROR",
  "DELETED",
  "RESIZE",
  "REVERT_RESIZE",
  "MIGRATING",
  "REBUILD",
] as const;
export type ServerStatus = (typeof SERVER_STATUSES)[number];

/** User actions on a server. */
export const ACTIONS = [
  "create",
  "delete",
  "start",
  "stop",
  "reboot_soft",
  "reboot_hard",
  "pause",
  "unpause",
  "suspend",
  "resume",
  "lock",
  "unlock",
  "resize",
  "migrate",
  "confirm_resize",
  "revert_resize",
  "live_migrate",
  "evacuate",
  "rebuild",
  "create_image",
  "shelve",
  "unshelve",
  "attach_interface",
  "detach_interface",
  "attach_volume",
  "detach_volume",
  "extend_volume",
] as const;
export type Action = (typeof ACTIONS)[number];
/** Actions on an existing server. */
export type ServerAction = Exclude<Action, "create">;

/** Every vm_state a server can be in while it exists. */
export const LIVE_STATES: readonly VmState[] = VM_STATES.filter((s) => s !== "DELETED");

/** Tasks of servers waiting for placement to choose a host (builds and unshelves; moves wait in their own task). */
export const PLACEMENT_TASKS: readonly TaskState[] = ["SCHEDULING", "UNSHELVING"];

/** The name an action is recorded under (Nova's instance action names). */
export function actionName(a: Action): string {
  return a.startsWith("reboot") ? "reboot" : a;
}

/**
 * Default seconds each task may run before the reaper ends it. Generous for
 * real hypervisors; a deployment scales them with `task_timeouts`.
 */
export const DEFAULT_TASK_TIMEOUTS: Readonly<Record<TaskState, number>> = {
  SCHEDULING: 300,
  SPAWNING: 900,
  POWERING_OFF: 300,
  POWERING_ON: 300,
  REBOOTING: 600,
  REBOOTING_HARD: 300,
  DELETING: 600,
  PAUSING: 120,
  UNPAUSING: 120,
  SUSPENDING: 600,
  RESUMING: 600,
  RESIZE_PREP: 300,
  RESIZE_MIGRATING: 3600,
  RESIZE_FINISH: 900,
  RESIZE_CONFIRMING: 600,
  RESIZE_REVERTING: 900,
  MIGRATING: 3600,
  REBUILDING: 900,
  REBUILD_SPAWNING: 900,
  IMAGE_SNAPSHOT: 3600,
  SHELVING: 3600,
  UNSHELVING: 900,
  IMAGE_UPLOADING: 3600,
  SHELVING_IMAGE_UPLOADING: 3600,
  SHELVING_OFFLOADING: 3600,
  INTERFACE_ATTACHING: 300,
  INTERFACE_DETACHING: 300,
  VOLUME_ATTACHING: 300,
  VOLUME_DETACHING: 300,
  VOLUME_EXTENDING: 300,
  BLOCK_DEVICE_MAPPING: 1800,
};

/** Resize/migration tasks (status RESIZE) in order. */
export const RESIZE_TASKS: readonly TaskState[] = ["RESIZE_PREP", "RESIZE_MIGRATING", "RESIZE_FINISH"];

/** The status users see, derived as Nova's API derives it. */
export function serverStatus(vm: VmState, task: TaskState | null): ServerStatus {
  if (task === "REBOOTING") return "REBOOT";
  if (task === "REBOOTING_HARD") return "HARD_REBOOT";
  if (task !== null && RESIZE_TASKS.includes(task)) return "RESIZE";
  if (vm === "RESIZED" && task === "RESIZE_REVERTING") return "REVERT_RESIZE";
  if (task === "MIGRATING") return "MIGRATING";
  if (task === "REBUILDING" || task === "REBUILD_SPAWNING") return "REBUILD";
  switch (vm) {
    case "BUILDING":
      return "BUILD";
    case "ACTIVE":
      return "ACTIVE";
    case "STOPPED":
      return "SHUTOFF";
    case "PAUSED":
      return "PAUSED";
    case "SUSPENDED":
      return "SUSPENDED";
    case "RESIZED":
      return "VERIFY_RESIZE";
    case "SHELVED_OFFLOADED":
      return "SHELVED_OFFLOADED";
    case "ERROR":
      return "ERROR";
    case "DELETED":
      return "DELETED";
  }
}

/** Task states that change the status shown (a vm_state status filter excludes them). */
export const STATUS_TASKS: readonly TaskState[] = [
  "REBOOTING",
  "REBOOTING_HARD",
  ...RESIZE_TASKS,
  "RESIZE_REVERTING",
  "MIGRATING",
  "REBUILDING",
  "REBUILD_SPAWNING",
];

/**
 * What a status filter selects: statuses shown for a task select by
 * task_state, every other status by vm_state minus the servers whose task
 * shows another status.
 */
export function statusFilter(status: ServerStatus): { vmState?: VmState; tasks?: readonly TaskState[] } {
  switch (status) {
    case "REBOOT":
      return { tasks: ["REBOOTING"] };
    case "HARD_REBOOT":
      return { tasks: ["REBOOTING_HARD"] };
    case "RESIZE":
      return { tasks: RESIZE_TASKS };
    case "REVERT_RESIZE":
      return { tasks: ["RESIZE_REVERTING"] };
    case "MIGRATING":
      return { tasks: ["MIGRATING"] };
    case "REBUILD":
      return { tasks: ["REBUILDING", "REBUILD_SPAWNING"] };
    case "BUILD":
      return { vmState: "BUILDING" };
    case "SHUTOFF":
      return { vmState: "STOPPED" };
    case "VERIFY_RESIZE":
      return { vmState: "RESIZED" };
    default:
      return { vmState: status };
  }
}
