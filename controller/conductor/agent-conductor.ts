/**
 * The conductor's side of the agents' stream (AgentService/Connect): a
 * host's hello registers it and binds its ops consumer; reports, op results
 * and progress are applied in their own transactions.
 */
import type { JetStreamManager } from "nats";
import type { OpOutcome } from "../domain/ops.js";
import type { TaskState } from "../domain/states.js";
import type { ComputeNode } from "../domain/types.js";
import { ensureHostConsumer } from "../bus/jetstream.js";
import { opsSubject, querySubject } from "../bus/subjects.js";
import { upsertNode } from "../store/nodes.js";
import type { ConductorContext } from "./context.js";
import { recordOpProgress } from "./progress.js";
import type { HostReport } from "./reports.js";
import { applyReport } from "./reports.js";
import { applyOpResult } from "./results.js";

/** A host's overcommit and reservations. */
export type HostAllocation = Pick<
  ComputeNode,
  "cpuAllocationRatio" | "ramAllocationRatio" | "diskAllocationRatio" | "reservedMemoryMb" | "reservedVcpus" | "reservedDiskGb"
>;

/** What a host says of itself in its hello. */
export interface Hello {
  readonly host: string;
  readonly hypervisorType: string;
  readonly version: string;
  readonly zone: string;
  readonly vcpus: number;
  readonly memoryMb: number;
  readonly diskGb: number;
  readonly migrationUri: string;
  readonly architecture: string;
  /** The host's own overcommit and reservations; absent fields take the controller's. */
  readonly allocation: Partial<HostAllocation>;
}

/** Where the host's agent takes its ops from and answers queries. */
export interface HelloAck {
  readonly stream: string;
  readonly subject: string;
  readonly consumer: string;
  readonly reportIntervalSeconds: number;
  readonly querySubject: string;
}

/** What the agent stream needs from the conductor. */
export interface AgentConductor {
  hello(h: Hello): Promise<HelloAck>;
  report(r: HostReport): Promise<void>;
  /** Applies a result `host` reported; refused unless the op was sent to `host`. */
  result(o: OpOutcome, host: string): Promise<void>;
  /** Records progress `host` reported; dropped unless the op was sent to `host`. */
  progress(p: { opId: string; percent: number; message: string; stage: TaskState | null }, host: string): Promise<void>;
}

export function agentConductor(
  ctx: ConductorContext,
  o: { readonly jsm: JetStreamManager; readonly opsStream: string; readonly reportIntervalSeconds: number; readonly allocation: HostAllocation },
): AgentConductor {
  return {
    hello: async (h) => {
      // The host's own settings, where its agent gives them, win.
      await upsertNode(ctx.pool, { ...h, ...o.allocation, ...h.allocation });
      const consumer = await ensureHostConsumer(o.jsm, o.opsStream, ctx.subjectPrefix, h.host);
      return {
        stream: o.opsStream,
        subject: opsSubject(ctx.subjectPrefix, h.host),
        consumer,
        reportIntervalSeconds: o.reportIntervalSeconds,
        querySubject: querySubject(ctx.subjectPrefix, h.host),
      };
    },
    report: async (r) => {
      await applyReport(ctx.pool, r);
    },
    result: (outcome, host) => applyOpResult(ctx, outcome, host),
    progress: (p, host) => recordOpProgress(ctx, p, host),
  };
}
