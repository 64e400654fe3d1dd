/** Steps whose failure must not stop what they are part of, but must not pass unseen either. */
import type { Bindings, Logger } from "pino";

/**
 * Runs a step whose failure must not fail the call it is part of (cleanup
 * after a failure, housekeeping after a success, a close on the way out):
 * awaits it and resolves its result, or logs a warning with the error and
 * `what` was tried (and `context`) and resolves undefined.
 */
export async function bestEffort<T>(log: Logger, what: string, step: () => Promise<T> | T, context: Bindings = {}): Promise<T | undefined> {
  try {
    return await step();
  } catch (err) {
    log.warn({ ...context, err, step: what }, `${what} failed; going on`);
    return undefined;
  }
}
