/**
 * Nova's three state axes and the table of which action is allowed from which
 * state. This file is the one place that decides it.
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
] as const;
export type ServerStatus = (typeof SERVER_STATUSES)[number];

/** User actions on a server. */
export const ACTIONS = ["create", "delete", "start", "stop", "reboot_soft", "reboot_hard"] as const;
export type Action = (typeof ACTIONS)[number];

/** vm_states from which each action may start (Nova's check_instance_state). */
export const ALLOWED_FROM: Readonly<Record<Exclude<Action, "create">, ReadonlySet<VmState>>> = {
  delete: new Set(VM_STATES.filter((s) => s !== "DELETED")),
  start: new Set<VmState>(["STOPPED"]),
  stop: new Set<VmState>(["ACTIVE", "ERROR"]),
  reboot_soft: new Set<VmState>(["ACTIVE"]),
  reboot_hard: new Set<VmState>(["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED", "ERROR"]),
};

/** Task states an action may interrupt (delete may interrupt a build, as in Nova). */
export const INTERRUPTIBLE_BY: Readonly<Record<Exclude<Action, "create">, ReadonlySet<TaskState>>> = {
  delete: new Set<TaskState>(["SCHEDULING", "SPAWNING", "POWERING_OFF", "POWERING_ON", "REBOOTING", "REBOOTING_HARD"]),
  start: new Set(),
  stop: new Set(),
  reboot_soft: new Set(),
  reboot_hard: new Set<TaskState>(["REBOOTING"]),
};

/** The task_state each action sets while it runs. */
export const TASK_OF: Readonly<Record<Exclude<Action, "create">, TaskState>> = {
  delete: "DELETING",
  start: "POWERING_ON",
  stop: "POWERING_OFF",
  reboot_soft: "REBOOTING",
  reboot_hard: "REBOOTING_HARD",
};

/** The status users see, derived as Nova's API derives it. */
export function serverStatus(vm: VmState, task: TaskState | null): ServerStatus {
  if (task === "REBOOTING") return "REBOOT";
  if (task === "REBOOTING_HARD") return "HARD_REBOOT";
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

/**
 * What a status filter selects: reboot statuses select by task_state, every
 * other status by vm_state minus the servers that show as rebooting.
 */
export function statusFilter(status: ServerStatus): { vmState?: VmState; task?: TaskState } {
  switch (status) {
    case "REBOOT":
      return { task: "REBOOTING" };
    case "HARD_REBOOT":
      return { task: "REBOOTING_HARD" };
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

/** Task states that change the status shown (a status filter excludes them). */
export const STATUS_TASKS: readonly TaskState[] = ["REBOOTING", "REBOOTING_HARD"];
