/** Capped exponential backoff with jitter, for reconnects. */
import { setTimeout as sleep } from "node:timers/promises";
import { Metadata } from "@grpc/grpc-js";
import { decodeStatusDetails } from "../controller/api/status.js";

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

/**
 * The delay a gRPC error asks for (google.rpc.RetryInfo in its status
 * details, as a busy controller sends), in ms; undefined when it asks none.
 */
export function askedRetryDelayMs(err: unknown): number | undefined {
  const md = (err as { metadata?: Metadata } | undefined)?.metadata;
  if (!(md instanceof Metadata)) return undefined;
  try {
    const d = decodeStatusDetails(md).retryInfo?.retryDelay;
    return d ? d.seconds * 1000 + Math.round(d.nanos / 1e6) : undefined;
  } catch {
    return undefined; // details that do not decode ask for nothing
  }
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
