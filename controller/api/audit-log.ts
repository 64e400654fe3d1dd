/**
 * The audit trail of the API: every mutating call is recorded by the rpc
 * wrappers (rpc.ts) once it has its outcome, refused and failed calls
 * included. A record is written on the
 * pool, outside the call's own transaction (which has committed or rolled
 * back by then), before the answer is sent; a record that cannot be written
 * is logged at error level and the call still gets its answer, since what
 * it did has already happened (as Keystone's and Nova's CADF audit
 * middleware, which never fails a request for its notification).
 * AuditService (audit-service.ts) lists the records.
 */
import type { Logger } from "pino";
import type { Principal } from "../domain/types.js";
import { PumpWorker } from "../pump.js";
import { BatchQueue } from "../batch-queue.js";
import { insertAuditRecords, purgeAuditRecords, type AuditEntry } from "../store/audit.js";
import type { Pool } from "../store/db.js";

/** Methods that only read: every name starting so is left out of the trail. */
const READ_ONLY = /^(Get|List|Watch|Wait|Explain|Download)/;

/** Whether a call of `path` ("/package.Service/Method") is recorded. */
export function isAudited(path: string): boolean {
  const method = path.slice(path.lastIndexOf("/") + 1);
  return !READ_ONLY.test(method) && !path.startsWith("/grpc.");
}

/** What a handler may add to its call's record (such as the target, when the request does not name it). */
export interface AuditNote {
  target?: string;
}

const str = (v: unknown): string => (typeof v === "string" ? v : "");

/**
 * What a call acted on: what the handler noted, else the resource the
 * response returns (a created server, image, token, group, aggregate,
 * flavor), else the request's id, server id, operation name or host.
 */
export function auditTarget(req: unknown, res: unknown, note: AuditNote): string {
  if (note.target) return note.target;
  const r = (res ?? {}) as Record<string, { id?: unknown; name?: unknown } | undefined>;
  for (const k of ["server", "image", "token", "serverGroup", "aggregate", "flavor"]) {
    const id = str(r[k]?.id);
    if (id) return id;
  }
  const q = (req ?? {}) as Record<string, unknown>;
  const nested = (k: string) => str((q[k] as { id?: unknown } | undefined)?.id);
  return str(q.id) || str(q.serverId) || (str(q.name).startsWith("servers/") ? str(q.name) : "") || str(q.host) || nested("image") || nested("flavor") || nested("serverGroup");
}

/** Writes audit records; a failed write is logged loudly and counted, never thrown. */
export class AuditLog {
  /** Records that could not be written since start. */
  failures = 0;

  /**
   * Calls that end together have their records written together: one that
   * ends alone is written at once, those that end while a write runs go in
   * the next, in one statement.
   */
  private readonly writes: BatchQueue<AuditEntry, void>;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
  ) {
    this.writes = new BatchQueue({
      maxBatch: 256,
      maxConcurrent: 2,
      together: async (entries) => {
        await insertAuditRecords(this.pool, entries);
        return entries.map((): PromiseSettledResult<void> => ({ status: "fulfilled", value: undefined }));
      },
      alone: (entry) => insertAuditRecords(this.pool, [entry]),
    });
  }

  async record(e: { path: string; principal: Principal | null; req: unknown; res: unknown; note: AuditNote; code: number; reason: string }): Promise<void> {
    const entry: AuditEntry = {
      tokenId: e.principal?.tokenId ?? "",
      projectId: e.principal?.projectId ?? "",
      role: e.principal?.role ?? "",
      method: e.path.replace(/^\//, ""),
      target: auditTarget(e.req, e.res, e.note),
      requestId: str((e.req as { requestId?: unknown } | null)?.requestId),
      code: e.code,
      reason: e.reason,
    };
    try {
      await this.writes.add(entry);
    } catch (err) {
      this.failures++;
      this.log.error({ err, audit: entry, failures: this.failures }, "AUDIT RECORD LOST: could not write the audit record of a call");
    }
  }
}

/** Deletes audit records past the retention, at start and then hourly, in batches. */
export class AuditPurger extends PumpWorker {
  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly retentionDays: number,
    intervalMs = 3600_000,
  ) {
    super(intervalMs);
  }

  protected async step(): Promise<boolean> {
    if (this.retentionDays <= 0) return false;
    const n = await purgeAuditRecords(this.pool, this.retentionDays, 1000);
    if (n) this.log.info({ purged: n, retentionDays: this.retentionDays }, "audit records past retention purged");
    return n === 1000;
  }

  protected failed(err: unknown): boolean {
    this.log.warn({ err }, "audit purge failed; will retry");
    return false;
  }
}
