import type { ComputeNode } from "./types.js";

/** A host is up while its last report is younger than service_down_time. */
export function isUp(n: Pick<ComputeNode, "lastSeenAt">, downTimeSeconds: number, now = Date.now()): boolean {
  return n.lastSeenAt !== null && now - n.lastSeenAt.getTime() <= downTimeSeconds * 1000;
}
