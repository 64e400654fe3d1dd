import type { Logger } from "pino";

/**
 * Runs a step whose failure must not stop its caller (a close on the way
 * out, a cleanup): a failure is logged with what was tried, never dropped
 * in silence. Returns the step's value, or undefined when it failed.
 */
export async function bestEffort<T>(log: Logger, what: string, step: () => Promise<T>, fields: Record<string, unknown> = {}): Promise<T | undefined> {
  try {
    return await step();
  } catch (err) {
    log.warn({ err, ...fields }, `${what} failed; going on`);
    return undefined;
  }
}
