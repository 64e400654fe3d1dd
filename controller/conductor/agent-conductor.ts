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
import { agentInboxPrefix, type AgentCredentialIssuer } from "../bus/nats-auth.js";
import { failedPrecondition, invalidArgument } from "../errors.js";
import { upsertNode } from "../store/nodes.js";
import { setTunnelIp } from "../store/network-changes.js";
import { recordPools } from "../store/volume-pools.js";
import type { ReportedPool } from "../domain/volume.js";
import type { HostNetwork } from "./host-ports.js";
import type { NetworkSync } from "./network-sync.js";
import type { ConductorContext } from "./context.js";
import { recordOpProgress } from "./progress.js";
import type { HostReport } from "./reports.js";
import { ReportBatcher } from "./reports.js";
import { ResultBatcher } from "./results.js";
import { Admission } from "./admission.js";

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
  /** Public key of the NATS user key pair the agent made ("" if none). */
  readonly natsPublicKey: string;
  /** The host's VXLAN underlay address ("" if none). */
  readonly tunnelIp: string;
  /** Its volume pools (a volume host), none otherwise. */
  readonly volumePools: readonly ReportedPool[];
}

/** Where the host's agent takes its ops from and answers queries. */
export interface HelloAck {
  readonly stream: string;
  readonly subject: string;
  readonly consumer: string;
  readonly reportIntervalSeconds: number;
  readonly querySubject: string;
  /** The agent's NATS user, when the bus needs credentials. */
  readonly natsCredential: NatsCredential | null;
  /** Keys whose signature the agent must find on every op. */
  readonly opSigningKeys: readonly string[];
  /** Prefix of the inbox subjects the agent's NATS connection uses. */
  readonly inboxPrefix: string;
}

/** A NATS user JWT for an agent's key pair. */
export interface NatsCredential {
  readonly jwt: string;
  readonly expiresAt: Date;
}

/** What the agent stream needs from the conductor. */
export interface AgentConductor {
  /** `signal`: the agent went away (a Hello still waiting to be admitted is dropped). */
  hello(h: Hello, signal?: AbortSignal): Promise<HelloAck>;
  /** A fresh NATS user JWT for the key pair the host's agent named in its hello. */
  renewCredential(host: string, natsPublicKey: string): NatsCredential;
  report(r: HostReport): Promise<void>;
  /**
   * Applies a result `host` reported; refused unless the op was sent to
   * `host`. `subject` is what it is about (its server, or volume): results
   * about one subject are never applied in the same batch.
   */
  result(o: OpOutcome, host: string, subject: string): Promise<void>;
  /** Records progress `host` reported; dropped unless the op was sent to `host`. */
  progress(p: { opId: string; percent: number; message: string; stage: TaskState | null }, host: string): Promise<void>;
  /** Sends `host` its network now and after each change, until the returned function is called. */
  watchNetwork(host: string, send: (update: HostNetwork) => void): () => void;
}

export function agentConductor(
  ctx: ConductorContext,
  o: {
    readonly jsm: JetStreamManager;
    /** Mints agents' NATS users; null when the bus takes connections without credentials. */
    readonly issuer: AgentCredentialIssuer | null;
    readonly opSigningKeys: readonly string[];
    readonly opsStream: string;
    readonly reportIntervalSeconds: number;
    /** Hellos handled at once, and waiting at most (beyond: refused with a retry delay). */
    readonly hellos: { readonly concurrency: number; readonly maxQueued: number };
    readonly allocation: HostAllocation;
    /** Hosts' networks, kept current. */
    readonly network: NetworkSync;
  },
): AgentConductor {
  const credential = (host: string, natsPublicKey: string): NatsCredential | null => {
    if (!o.issuer) return null;
    if (!natsPublicKey) throw invalidArgument("hello.nats_public_key", "this controller's NATS bus needs credentials: send the public key of the agent's NATS user key pair");
    try {
      return o.issuer.issue(natsPublicKey, { host, stream: o.opsStream, querySubject: querySubject(ctx.subjectPrefix, host) });
    } catch (err) {
      throw invalidArgument("hello.nats_public_key", (err as Error).message);
    }
  };
  // Hellos come in storms (every agent at once after a controller restart):
  // a few at a time, the rest told when to come back.
  const hellos = new Admission({ ...o.hellos, what: "agent hellos", retryMinMs: 1000, retryMaxMs: 8000, onRefused: () => ctx.metrics?.hellosRefused.inc() });
  const reports = new ReportBatcher(ctx.pool, ctx.log);
  const results = new ResultBatcher(ctx);
  return {
    hello: (h, signal) =>
      hellos.run(async () => {
        // Checked before anything is written: a hello that cannot get its credential changes nothing.
        const natsCredential = credential(h.host, h.natsPublicKey);
        // The host's own settings, where its agent gives them, win.
        await upsertNode(ctx.pool, { ...h, ...o.allocation, ...h.allocation });
        await setTunnelIp(ctx.pool, h.host, h.tunnelIp);
        await recordPools(ctx.pool, h.host, h.volumePools, { replace: true });
        const consumer = await ensureHostConsumer(o.jsm, o.opsStream, ctx.subjectPrefix, h.host);
        return {
          stream: o.opsStream,
          subject: opsSubject(ctx.subjectPrefix, h.host),
          consumer,
          reportIntervalSeconds: o.reportIntervalSeconds,
          querySubject: querySubject(ctx.subjectPrefix, h.host),
          natsCredential,
          opSigningKeys: o.opSigningKeys,
          inboxPrefix: agentInboxPrefix(h.host),
        };
      }, signal),
    renewCredential: (host, natsPublicKey) => {
      const c = credential(host, natsPublicKey);
      if (!c) throw failedPrecondition("this controller's NATS bus takes connections without credentials", "NO_NATS_CREDENTIALS");
      return c;
    },
    report: async (r) => {
      await reports.add(r);
    },
    result: (outcome, host, subject) => results.add(outcome, host, subject),
    progress: (p, host) => recordOpProgress(ctx, p, host),
    watchNetwork: (host, send) => o.network.subscribe(host, send),
  };
}
