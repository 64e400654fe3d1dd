import type { Metadata, ServerReadableStream, ServerUnaryCall, ServerWritableStream, sendUnaryData } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Principal, Role } from "../domain/types.js";
import { permissionDenied, toApiError, unauthenticated, type ApiError } from "../errors.js";
import type { Pool } from "../store/db.js";
import { principalForSecret } from "../store/tokens.js";
import { toServiceError } from "./status.js";
import { SpanKind, TRACEPARENT_HEADER, inSpan, spanAttribute, traceContextOf } from "../tracing.js";
import { decoded } from "./decode.js";
import type { AuditLog, AuditNote } from "./audit-log.js";
import { isAudited } from "./audit-log.js";
import type { Limits } from "./limits.js";
import type { TokenWatch } from "./token-watch.js";
import type { ControllerMetrics } from "../metrics.js";
import { status } from "@grpc/grpc-js";

/** What every handler gets: the caller and a logger bound to the request. */
export interface CallContext {
  readonly principal: Principal;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** What the handler adds to the call's audit record. */
  readonly audit: AuditNote;
}

/** Resolves the bearer token of a call. */
export async function authenticate(pool: Pool, md: Metadata): Promise<Principal> {
  const values = md.get("authorization");
  const header = typeof values[0] === "string" ? values[0] : "";
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw unauthenticated("missing bearer token: send metadata 'authorization: Bearer <token>'");
  const p = await principalForSecret(pool, m[1]!);
  if (p === "expired") throw unauthenticated("token expired");
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
  /** Where mutating calls are recorded; none: not recorded. */
  readonly audit?: AuditLog;
  /** Per-token rate limits and stream caps, applied by the wrappers below to every call. */
  readonly limits: Limits;
  /** Ends long calls whose token is deleted or expires while they are open. */
  readonly tokens: TokenWatch;
  /** Where each call's method, status code and duration are counted; none: not counted. */
  readonly metrics?: ControllerMetrics | null;
}

function logFailure(log: Logger, method: string, err: ReturnType<typeof toApiError>): void {
  if (err.code === 13) log.error({ err: err.cause ?? err, method }, "internal error");
  else log.debug({ method, code: err.code, reason: err.reason }, err.message);
}

/**
 * A call that started an operation (reads of operations are not), logged with the ids its later lines
 * (op queued, op done, the agent's) share: request_id, and server_id or
 * volume_id.
 */
function logAccepted(log: Logger, method: string, principal: Principal | null, res: unknown): void {
  const op = (res as { operation?: { name: string; requestId: string; serverId: string; volumeId: string } } | null)?.operation;
  if (!op?.name) return;
  const ids = { request_id: op.requestId, ...(op.serverId ? { server_id: op.serverId } : {}), ...(op.volumeId ? { volume_id: op.volumeId } : {}) };
  log.info({ method, project: principal?.projectId, ...ids, operation: op.name }, "operation accepted");
}

/**
 * Who may make a call: "public" — any token but an agent's (the API);
 * "host" — an agent or admin token (AgentService, a host's own calls).
 */
export type Callers = "public" | "host";

/**
 * A call from its start to its audit record: the caller (checked against
 * `callers`), a bound logger, and — for a mutating call — the record of how
 * it ended, written before the answer is sent (audit-log.ts).
 */
class Call {
  principal: Principal | null = null;
  readonly note: AuditNote = {};
  readonly ac = new AbortController();
  /** When the call arrived (performance.now()). */
  readonly started = performance.now();
  /** Closes the stream's count (once), when the handler is done or the call is over. */
  done: () => void = () => {};

  constructor(
    private readonly deps: RpcDeps,
    readonly path: string,
    private readonly method: string,
    private readonly md: Metadata,
    private readonly callers: Callers,
    private readonly stream?: Ending,
  ) {}

  async open(): Promise<CallContext> {
    const principal = await authenticate(this.deps.pool, this.md);
    this.principal = principal;
    if (this.callers === "public" && principal.role === "agent") throw permissionDenied("agent tokens may only make AgentService calls");
    if (this.callers === "host" && principal.role !== "agent" && principal.role !== "admin") {
      throw permissionDenied("AgentService needs a token with the agent or admin role");
    }
    // Within the token's rate and, for a stream, its stream caps (a host's
    // streams count as agent streams), counted until the call is over.
    this.deps.limits.admit(principal);
    if (this.stream) {
      const limits = this.deps.limits;
      this.done = this.callers === "host" ? limits.openAgentStream(principal) : limits.openStream(principal);
      whenOver(this.stream, this.done);
    }
    return { principal, log: this.deps.log.child({ method: this.method, project: principal.projectId }), signal: this.ac.signal, audit: this.note };
  }

  /**
   * Records the call's outcome when it is a mutating one. Calls refused
   * before anyone was known (no or a bad token) and calls over their rate
   * are not recorded one by one: a flood of them would otherwise be a flood
   * of inserts. They are counted in the log instead.
   */
  async close(req: unknown, res: unknown, err: ApiError | null): Promise<void> {
    const m = this.deps.metrics;
    if (m) {
      m.grpcRequests.inc({ method: this.method, code: status[err ? err.code : 0] ?? String(err?.code) });
      m.grpcDuration.observe({ method: this.method }, (performance.now() - this.started) / 1000);
    }
    if (!this.deps.audit || !isAudited(this.path)) return;
    if (err && (this.principal === null || err.reason === "RATE_LIMITED")) {
      unrecorded.count(this.deps.log, err.reason || "UNAUTHENTICATED");
      return;
    }
    await this.deps.audit.record({ path: this.path, principal: this.principal, req, res, note: this.note, code: err ? err.code : 0, reason: err ? err.reason : "" });
  }
}

/** Refused calls not written to the audit table, logged as counts at most once a minute. */
const unrecorded = {
  counts: new Map<string, number>(),
  since: Date.now(),
  count(log: Logger, reason: string): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    if (Date.now() - this.since < 60_000) return;
    log.warn({ refused: Object.fromEntries(this.counts), since: new Date(this.since).toISOString() }, "mutating calls refused before a caller was known or over their rate (not in the audit table)");
    this.counts.clear();
    this.since = Date.now();
  },
};

type Ending = { on(event: string, fn: () => void): unknown; cancelled?: boolean };

/** Calls `close` once the call is over, however it ends (or at once if it already is). */
export function whenOver(call: Ending, close: () => void): void {
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

function pathOf(call: { getPath?: () => string }, method: string): string {
  return typeof call.getPath === "function" ? call.getPath() : `/${method}`;
}

/** Answers a call with one response: authentication (agents excluded), error mapping, logging, audit. */
function answer<Res>(
  deps: RpcDeps,
  method: string,
  call: ServerUnaryCall<unknown, Res> | ServerReadableStream<unknown, Res>,
  fn: (ctx: CallContext) => Promise<Res>,
  cb: sendUnaryData<Res>,
  callers: Callers,
  stream = false,
): void {
  const c = new Call(deps, pathOf(call, method), method, call.metadata, callers, stream ? call : undefined);
  call.on("cancelled", () => c.ac.abort());
  const req = "request" in call ? call.request : undefined;
  // The call's span: a child of the caller's (a `traceparent` in the call's metadata), else a new trace when tracing is on.
  const traceParent = call.metadata.get(TRACEPARENT_HEADER)[0];
  void inSpan(`rpc ${method}`, { kind: SpanKind.SERVER, parent: traceContextOf(typeof traceParent === "string" ? traceParent : null), attributes: { "rpc.method": method } }, () =>
    answerIn(deps, method, c, req, fn, cb),
  );
}

/** answer's work, in the call's span; resolves once the answer is sent (it never rejects: failures are answered). */
function answerIn<Res>(deps: RpcDeps, method: string, c: Call, req: unknown, fn: (ctx: CallContext) => Promise<Res>, cb: sendUnaryData<Res>): Promise<void> {
  return c
    .open()
    .then(fn)
    .finally(() => c.done())
    .then(
      async (res) => {
        await c.close(req, res, null);
        if (!c.path.startsWith("/novamesh.compute.v1.OperationService/")) logAccepted(deps.log, method, c.principal, res);
        cb(null, res);
      },
      async (e) => {
        const err = toApiError(e);
        logFailure(deps.log, method, err);
        spanAttribute("rpc.grpc.status_code", err.code);
        await c.close(req, undefined, err);
        cb(toServiceError(err));
      },
    );
}

/** Wraps a unary handler: authentication (agents excluded unless `callers` is "host"), error mapping, logging, audit. */
export function unary<Req, Res>(
  deps: RpcDeps,
  method: string,
  fn: (req: Req, ctx: CallContext, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
  callers: Callers = "public",
  /** A call that may stay open for long (WaitOperation): it counts against the stream caps while it does. */
  long = false,
): (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => void {
  return (call, cb) => answer(deps, method, call, (ctx) => fn(decoded(call.request), ctx, call), cb, callers, long);
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
    const c = new Call(deps, pathOf(call, method), method, call.metadata, callers, call);
    call.on("cancelled", () => c.ac.abort());
    call.on("close", () => c.ac.abort());
    c.open()
      .then((ctx) => fn(decoded(call.request), ctx, call))
      .finally(() => c.done())
      .then(
        async () => {
          await c.close(call.request, undefined, null);
          call.end();
        },
        async (e) => {
          if (c.ac.signal.aborted) return;
          const err = toApiError(e);
          logFailure(deps.log, method, err);
          await c.close(call.request, undefined, err);
          endWithError(call, err);
        },
      );
  };
}
