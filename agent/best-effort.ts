/** Steps whose failure must not stop what they are part of, but must not pass unseen either. */
import type { Logger } from "pino";

/**
 * Runs `step`; if it fails, logs what was tried and why it failed, and
 * resolves all the same.
 */
export async function bestEffort(log: Logger, what: string, step: () => Promise<unknown>): Promise<void> {
  try {
    await step();
  } catch (err) {
    log.warn({ err, step: what }, `${what} failed; going on`);
  }
}
