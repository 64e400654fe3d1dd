/** Capped exponential backoff with jitter, for reconnects. */
import { setTimeout as sleep } from "node:timers/promises";

/** Options of {@link backoffDelay}. */
export interface BackoffOptions {
  /** First delay in ms. */
  readonly initialMs: number;
  /** Largest delay in ms. */
  readonly maxMs: number;
}

/**
 * Delay before retry number `attempt` (0-based): initial × 2^attempt, capped
 * at max, then scaled by a random factor in [0.5, 1] so many agents that lost
 * the same controller do not reconnect in lock step.
 */
export function backoffDelay(attempt: number, { initialMs, maxMs }: BackoffOptions, random = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.5 + random() / 2));
}

/** Sleeps `ms`; resolves false (early) if the signal aborts. */
export async function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}
