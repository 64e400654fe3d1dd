/**
 * What an operation's log lines share, in the controller and the agent
 * alike: `request_id`, `op_id`, `server_id`, `volume_id` (and the agent's
 * `host`, a binding of its logger). Code that works for one operation runs
 * in `withLogContext`; every line logged inside — by the executor, a
 * driver, a network driver — carries the fields, through loggers made with
 * `loggerOptions` (pino's mixin). So `grep <request_id>` over the
 * controller's and the agents' logs follows one request across processes.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { LoggerOptions } from "pino";

export interface LogContext {
  readonly request_id?: string;
  readonly op_id?: string;
  readonly server_id?: string;
  readonly volume_id?: string;
}

const current = new AsyncLocalStorage<LogContext>();

/** Runs `fn` with `ctx` (over the context it runs in) on every line it logs. */
export function withLogContext<T>(ctx: LogContext, fn: () => T): T {
  const outer = current.getStore();
  return current.run(outer ? { ...outer, ...ctx } : ctx, fn);
}

/** Runs `fn` outside any operation's context (for work that outlives the operation it was started in). */
export function outsideLogContext<T>(fn: () => T): T {
  return current.exit(fn);
}

/** The context lines logged now carry. */
export function logContext(): LogContext {
  return current.getStore() ?? {};
}

/** pino options that put the current context on every line (fields given in the call win). */
export function loggerOptions(options: LoggerOptions = {}): LoggerOptions {
  return { ...options, mixin: () => ({ ...current.getStore() }) };
}
