import type { TaskState } from "./states.js";
import { DEFAULT_TASK_TIMEOUTS, TASK_STATES } from "./states.js";
import type { VolumeTimeouts } from "./volume.js";
import { DEFAULT_VOLUME_TIMEOUTS, VOLUME_TASKS } from "./volume.js";

/** Seconds each task may run. */
export type TaskTimeouts = Readonly<Record<TaskState, number>>;

/** A task with its deadline, for an instance patch. */
export function startTask(timeouts: TaskTimeouts, task: TaskState, now = Date.now()): { taskState: TaskState; taskDeadline: Date } {
  return { taskState: task, taskDeadline: new Date(now + timeouts[task] * 1000) };
}

/**
 * The deadline of a task step the host reports reaching (REBUILD_SPAWNING,
 * IMAGE_UPLOADING, SHELVING_*): the step's own timeout from now, never
 * earlier than the deadline the task already has.
 */
export function stepDeadline(timeouts: TaskTimeouts, step: TaskState, current: Date | null, now = Date.now()): Date {
  const own = now + timeouts[step] * 1000;
  return current !== null && current.getTime() > own ? current : new Date(own);
}

/** No task (and so no deadline). */
export const NO_TASK = { taskState: null } as const;

/**
 * Parses task timeouts: `SPAWNING=600,PAUSING=60`, with `*=N` for every task
 * not named. Unknown task names and non-positive numbers are rejected.
 */
export function parseTaskTimeouts(spec: string, base: TaskTimeouts = DEFAULT_TASK_TIMEOUTS): TaskTimeouts {
  return parseTimeouts(spec, TASK_STATES, base, "task state");
}

/** Parses volume timeouts (`CREATING=900,DELETING=300`) as task timeouts are. */
export function parseVolumeTimeouts(spec: string, base: VolumeTimeouts = DEFAULT_VOLUME_TIMEOUTS): VolumeTimeouts {
  return parseTimeouts(spec, VOLUME_TASKS, base, "volume status");
}

function parseTimeouts<N extends string>(spec: string, names: readonly N[], base: Readonly<Record<N, number>>, what: string): Readonly<Record<N, number>> {
  const out: Record<string, number> = { ...base };
  const named = new Set<string>();
  let all: number | undefined;
  for (const part of spec.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Z_*]+)=(\d+(?:\.\d+)?)$/.exec(part);
    if (!m) throw new Error(`timeout ${JSON.stringify(part)} is not NAME=SECONDS`);
    const seconds = Number(m[2]);
    if (!(seconds > 0)) throw new Error(`timeout ${JSON.stringify(part)} must be positive`);
    if (m[1] === "*") all = seconds;
    else if ((names as readonly string[]).includes(m[1]!)) {
      out[m[1]!] = seconds;
      named.add(m[1]!);
    } else throw new Error(`unknown ${what} ${m[1]} in timeouts (known: ${names.join(", ")})`);
  }
  if (all !== undefined) for (const t of names) if (!named.has(t)) out[t] = all;
  return out as Record<N, number>;
}
