/**
 * Nova's three state axes, the table of which action is allowed from which
 * state, and how long each task may run. This file is the one place that
 * decides them.
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
] as const;
export type Action = (typeof ACTIONS)[number];
/** Actions on an existing server. */
export type ServerAction = Exclude<Action, "create">;

const ALL_LIVE = new Set(VM_STATES.filter((s) => s !== "DELETED"));

/** vm_states from which each action may start (Nova's check_instance_state). */
export const ALLOWED_FROM: Readonly<Record<ServerAction, ReadonlySet<VmState>>> = {
  delete: ALL_LIVE,
  start: new Set<VmState>(["STOPPED"]),
  stop: new Set<VmState>(["ACTIVE", "ERROR"]),
  reboot_soft: new Set<VmState>(["ACTIVE"]),
  reboot_hard: new Set<VmState>(["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED", "ERROR"]),
  pause: new Set<VmState>(["ACTIVE"]),
  unpause: new Set<VmState>(["PAUSED"]),
  suspend: new Set<VmState>(["ACTIVE"]),
  resume: new Set<VmState>(["SUSPENDED"]),
  lock: ALL_LIVE,
  unlock: ALL_LIVE,
  resize: new Set<VmState>(["ACTIVE", "STOPPED"]),
  migrate: new Set<VmState>(["ACTIVE", "STOPPED"]),
  confirm_resize: new Set<VmState>(["RESIZED"]),
  revert_resize: new Set<VmState>(["RESIZED"]),
  live_migrate: new Set<VmState>(["ACTIVE", "PAUSED"]),
  // Every state but a build; a shelved server has no host to evacuate from.
  evacuate: new Set<VmState>(["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED", "RESIZED", "ERROR"]),
  rebuild: new Set<VmState>(["ACTIVE", "STOPPED", "ERROR"]),
  create_image: new Set<VmState>(["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED"]),
  shelve: new Set<VmState>(["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED"]),
  unshelve: new Set<VmState>(["SHELVED_OFFLOADED"]),
};

/** Tasks that only touch the server's power: a dead host leaves them hanging, so evacuate may take over. */
const POWER_TASKS: readonly TaskState[] = ["POWERING_OFF", "POWERING_ON", "REBOOTING", "REBOOTING_HARD", "PAUSING", "UNPAUSING", "SUSPENDING", "RESUMING"];

/**
 * Task states an action may interrupt. Delete interrupts anything but
 * another delete, as Nova's force delete does; a hard reboot may take over a
 * soft one. Lock and unlock run beside any task.
 */
export const INTERRUPTIBLE_BY: Readonly<Record<ServerAction, ReadonlySet<TaskState>>> = {
  delete: new Set(TASK_STATES.filter((t) => t !== "DELETING")),
  start: new Set(),
  stop: new Set(),
  reboot_soft: new Set(),
  reboot_hard: new Set<TaskState>(["REBOOTING"]),
  pause: new Set(),
  unpause: new Set(),
  suspend: new Set(),
  resume: new Set(),
  lock: new Set(TASK_STATES),
  unlock: new Set(TASK_STATES),
  resize: new Set(),
  migrate: new Set(),
  confirm_resize: new Set(),
  revert_resize: new Set(),
  live_migrate: new Set(),
  evacuate: new Set<TaskState>(POWER_TASKS),
  rebuild: new Set(),
  create_image: new Set(),
  shelve: new Set(),
  unshelve: new Set(),
};

/** Actions a locked server still allows to non-admins. */
export const ALLOWED_WHEN_LOCKED: ReadonlySet<ServerAction> = new Set<ServerAction>(["lock", "unlock"]);

/** The task_state each action sets while it runs (none for lock/unlock). */
export const TASK_OF: Readonly<Record<ServerAction, TaskState | null>> = {
  delete: "DELETING",
  start: "POWERING_ON",
  stop: "POWERING_OFF",
  reboot_soft: "REBOOTING",
  reboot_hard: "REBOOTING_HARD",
  pause: "PAUSING",
  unpause: "UNPAUSING",
  suspend: "SUSPENDING",
  resume: "RESUMING",
  lock: null,
  unlock: null,
  resize: "RESIZE_PREP",
  migrate: "RESIZE_PREP",
  confirm_resize: "RESIZE_CONFIRMING",
  revert_resize: "RESIZE_REVERTING",
  live_migrate: "MIGRATING",
  evacuate: "REBUILDING",
  rebuild: "REBUILDING",
  create_image: "IMAGE_SNAPSHOT",
  shelve: "SHELVING",
  unshelve: "UNSHELVING",
};

/** Actions whose operation is PENDING until the scheduler has chosen a host. */
export const SCHEDULED_ACTIONS: ReadonlySet<Action> = new Set<Action>(["create", "resize", "migrate", "live_migrate", "evacuate", "unshelve"]);

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
};

/**
 * The steps an op may move its task through, in order, as the host reports
 * reaching them (OpProgress.task_state): the first is the task the action
 * set.
 */
export const TASK_STEPS: Readonly<Record<string, readonly TaskState[]>> = {
  rebuild: ["REBUILDING", "REBUILD_SPAWNING"],
  snapshot: ["IMAGE_SNAPSHOT", "IMAGE_UPLOADING"],
  shelve: ["SHELVING", "SHELVING_IMAGE_UPLOADING", "SHELVING_OFFLOADING"],
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
