import type { TaskState } from "./states.js";
import { DEFAULT_TASK_TIMEOUTS, TASK_STATES } from "./states.js";

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
  const out: Record<string, number> = { ...base };
  const named = new Set<string>();
  let all: number | undefined;
  for (const part of spec.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Z_*]+)=(\d+(?:\.\d+)?)$/.exec(part);
    if (!m) throw new Error(`task timeout ${JSON.stringify(part)} is not TASK=SECONDS`);
    const seconds = Number(m[2]);
    if (!(seconds > 0)) throw new Error(`task timeout ${JSON.stringify(part)} must be positive`);
    if (m[1] === "*") all = seconds;
    else if ((TASK_STATES as readonly string[]).includes(m[1]!)) {
      out[m[1]!] = seconds;
      named.add(m[1]!);
    } else throw new Error(`unknown task state ${m[1]} in task timeouts (known: ${TASK_STATES.join(", ")})`);
  }
  if (all !== undefined) for (const t of TASK_STATES) if (!named.has(t)) out[t] = all;
  return out as TaskTimeouts;
}
