import type { Metadata, ServerReadableStream, ServerUnaryCall, ServerWritableStream, sendUnaryData } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Principal, Role } from "../domain/types.js";
import { permissionDenied, toApiError, unauthenticated, type ApiError } from "../errors.js";
import type { Pool } from "../store/db.js";
import { principalForSecret } from "../store/tokens.js";
import { toServiceError } from "./status.js";
import { decoded } from "./decode.js";
import type { Limits } from "./limits.js";

/** What every handler gets: the caller and a logger bound to the request. */
export interface CallContext {
  readonly principal: Principal;
  readonly log: Logger;
  readonly signal: AbortSignal;
}

/** Resolves the bearer token of a call. */
export async function authenticate(pool: Pool, md: Metadata): Promise<Principal> {
  const values = md.get("authorization");
  const header = typeof values[0] === "string" ? values[0] : "";
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw unauthenticated("missing bearer token: send metadata 'authorization: Bearer <token>'");
  const p = await principalForSecret(pool, m[1]!);
  if (!p) throw unauthenticated("invalid or revoked token");
  return p;
}

export function requireRole(ctx: CallContext, ...roles: Role[]): void {
  if (!roles.includes(ctx.principal.role)) throw permissionDenied(`this call needs the ${roles.join(" or ")} role`);
}

/** True when the caller may act across projects. */
export function isAdmin(ctx: CallContext): boolean {
  return ctx.principal.role === "admin";
}

export interface RpcDeps {
  readonly pool: Pool;
  readonly log: Logger;
  /** Per-token rate limits and stream caps, applied by the wrappers below to every call. */
  readonly limits: Limits;
}

function logFailure(log: Logger, method: string, err: ReturnType<typeof toApiError>): void {
  if (err.code === 13) log.error({ err: err.cause ?? err, method }, "internal error");
  else log.debug({ method, code: err.code, reason: err.reason }, err.message);
}

/**
 * Who may make a call: "public" — any token but an agent's (the API);
 * "host" — an agent or admin token (AgentService, a host's own calls).
 */
export type Callers = "public" | "host";

/**
 * The context of a call: its caller (checked against `callers`) and a
 * bound logger, once the caller's token is within its rate and, for a
 * stream, its stream caps (a host's streams count as agent streams). For a
 * stream, `stream` is told how to close its count, which the caller must
 * do when the call is over.
 */
async function openCall(deps: RpcDeps, md: Metadata, method: string, signal: AbortSignal, callers: Callers, stream?: (close: () => void) => void): Promise<CallContext> {
  const principal = await authenticate(deps.pool, md);
  if (callers === "public" && principal.role === "agent") throw permissionDenied("agent tokens may only make AgentService calls");
  if (callers === "host" && principal.role !== "agent" && principal.role !== "admin") throw permissionDenied("AgentService needs a token with the agent or admin role");
  deps.limits.admit(principal);
  if (stream) stream(callers === "host" ? deps.limits.openAgentStream(principal) : deps.limits.openStream(principal));
  return { principal, log: deps.log.child({ method, project: principal.projectId }), signal };
}

type Ending = { on(event: string, fn: () => void): unknown; cancelled?: boolean };

/** Calls `close` once the call is over, however it ends (or at once if it already is). */
function whenOver(call: Ending, close: () => void): void {
  for (const event of ["close", "finish", "cancelled", "error"]) call.on(event, close);
  if (call.cancelled) close();
}

/**
 * Admits an AgentService/Connect stream of `principal`: within the cap of
 * agent streams per token. Its messages are not rate limited (agents report
 * every second). The stream's count is closed when the call is over.
 */
export function admitAgentStream(deps: RpcDeps, principal: Principal, call: Ending): void {
  whenOver(call, deps.limits.openAgentStream(principal));
}

/** Answers a call with one response: authentication (agents excluded), error mapping, logging. */
function answer<Res>(
  deps: RpcDeps,
  method: string,
  call: ServerUnaryCall<unknown, Res> | ServerReadableStream<unknown, Res>,
  fn: (ctx: CallContext) => Promise<Res>,
  cb: sendUnaryData<Res>,
  callers: Callers,
  stream = false,
): void {
  const ac = new AbortController();
  call.on("cancelled", () => ac.abort());
  let close = () => {};
  openCall(deps, call.metadata, method, ac.signal, callers, stream ? (c) => whenOver(call, (close = c)) : undefined)
    .then(fn)
    .finally(() => close())
    .then(
      (res) => cb(null, res),
      (e) => {
        const err = toApiError(e);
        logFailure(deps.log, method, err);
        cb(toServiceError(err));
      },
    );
}

/** Wraps a unary handler: authentication (agents excluded unless `callers` is "host"), error mapping, logging. */
export function unary<Req, Res>(
  deps: RpcDeps,
  method: string,
  fn: (req: Req, ctx: CallContext) => Promise<Res>,
  callers: Callers = "public",
): (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => void {
  return (call, cb) => answer(deps, method, call, (ctx) => fn(decoded(call.request), ctx), cb, callers);
}

/**
 * Wraps a client-streaming handler the same way: `fn` reads the request
 * messages from `call` (after authentication) and returns the response.
 */
export function clientStream<Req, Res>(
  deps: RpcDeps,
  method: string,
  fn: (call: ServerReadableStream<Req, Res>, ctx: CallContext) => Promise<Res>,
  callers: Callers = "public",
): (call: ServerReadableStream<Req, Res>, cb: sendUnaryData<Res>) => void {
  return (call, cb) => answer(deps, method, call, (ctx) => fn(call, ctx), cb, callers, true);
}

/**
 * Ends a server stream (server-streaming or bidi) with `err`'s status. In
 * grpc-js an 'error' event is what records the status and ends the call;
 * `destroy()` drops the stream without one, and the client waits forever.
 */
export function endWithError(call: { emit(event: "error", err: unknown): boolean }, err: ApiError): void {
  call.emit("error", toServiceError(err));
}

/** Wraps a server-streaming handler the same way. */
export function serverStream<Req, Res>(
  deps: RpcDeps,
  method: string,
  fn: (req: Req, ctx: CallContext, call: ServerWritableStream<Req, Res>) => Promise<void>,
  callers: Callers = "public",
): (call: ServerWritableStream<Req, Res>) => void {
  return (call) => {
    const ac = new AbortController();
    call.on("cancelled", () => ac.abort());
    call.on("close", () => ac.abort());
    let close = () => {};
    openCall(deps, call.metadata, method, ac.signal, callers, (c) => whenOver(call, (close = c)))
      .then((ctx) => fn(decoded(call.request), ctx, call))
      .finally(() => close())
      .then(
        () => call.end(),
        (e) => {
          if (ac.signal.aborted) return;
          const err = toApiError(e);
          logFailure(deps.log, method, err);
          endWithError(call, err);
        },
      );
  };
}
