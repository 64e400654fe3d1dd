import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { AgentServiceServer, ConnectRequest, ConnectResponse, HostAllocation, NetworkUpdate } from "../../gen/novamesh/agent/v1/agent.js";
import { portToProto } from "../bus/op-codec.js";
import { parseIpv4 } from "../domain/ipv4.js";
import type { HostNetwork } from "../conductor/host-ports.js";
import type { AgentConductor, NatsCredential } from "../conductor/agent-conductor.js";
import type { PowerState } from "../domain/states.js";
import type { Principal } from "../domain/types.js";
import { invalidArgument, permissionDenied, toApiError } from "../errors.js";
import { HostTakenError, NotEnrolmentError, bindAgentToken } from "../store/tokens.js";
import { TaskState as PbTaskState } from "../../gen/novamesh/compute/v1/server.js";
import type { TaskState } from "../domain/states.js";
import type { ImageBytes } from "../store/image-bytes.js";
import { fromEnum, powerStateFromProto } from "./convert.js";
import { hostObjects } from "./host-objects.js";
import type { RpcDeps } from "./rpc.js";
import { admitAgentStream, authenticate, endWithError, whenOver } from "./rpc.js";
import { decoded } from "./decode.js";
import { limitExceeded } from "./limits.js";
import * as v from "./validate.js";
import { checkCertificateHost } from "./peer-certificate.js";
import { reportedPools } from "./volume-pools.js";

/** A host's network on the wire. */
function networkUpdateToProto(u: HostNetwork): NetworkUpdate {
  return {
    tunnelPeers: [...u.tunnelPeers],
    instances: [...u.instances].map(([instanceId, ports]) => ({ instanceId, ports: ports.map(portToProto) })),
  };
}

/** A Hello's free-text fields and the most characters each may have (the columns that keep them). */
const HELLO_TEXT_LIMITS = (h: { hypervisorType: string; version: string; zone: string; migrationUri: string; architecture: string }) =>
  [
    ["hypervisor_type", h.hypervisorType, 32],
    ["version", h.version, 64],
    ["zone", h.zone, 255],
    ["migration_uri", h.migrationUri, 1024],
    ["architecture", h.architecture, 32],
  ] as const;

/**
 * The controller's end of AgentService/Connect. Messages of one stream are
 * handled in order per server (a server's results apply in the order the
 * agent ran them); an OpResultAck is sent only after the result committed.
 * A failure to apply ends the stream with UNAVAILABLE: the agent reconnects
 * and re-sends what was not acknowledged. With `certificateNamesHost` (the
 * agent listener) a Hello is refused unless the client certificate names its host.
 */
export function agentService(deps: RpcDeps, conductor: AgentConductor, bytes: ImageBytes, opts: { certificateNamesHost?: boolean } = {}): AgentServiceServer {
  return {
    ...hostObjects(deps, bytes, opts),
    connect(call: ServerDuplexStream<ConnectRequest, ConnectResponse>) {
      let host: string | null = null;
      let natsPublicKey = "";
      let progressInFlight = 0;
      let chain: Promise<void> = Promise.resolve();
      const perServer = new Map<string, Promise<void>>();
      let failed = false;
      // Never throws: it is the last handler of every promise of this stream.
      const fail = (e: unknown) => {
        if (failed) return;
        failed = true;
        const err = toApiError(e);
        if (err.code === 13) deps.log.error({ err: err.cause ?? err, host }, "agent stream failed");
        else deps.log.warn({ host, reason: err.reason }, err.message);
        try {
          endWithError(call, err);
        } catch (endErr) {
          deps.log.debug({ err: endErr, host }, "agent stream already closed when its failure was answered");
        }
      };
      // Aborted when the agent goes away: its Hello, if still waiting to be admitted, is dropped.
      const gone = new AbortController();
      whenOver(call, () => gone.abort());
      const principalP = authenticate(deps.pool, call.metadata).then((p) => {
        if (p.role !== "agent" && p.role !== "admin") throw permissionDenied("AgentService needs a token with the agent or admin role");
        admitAgentStream(deps, p, call);
        // A deleted or expired token ends the stream, and the host stops counting as up.
        whenOver(call, deps.tokens.hold(p.tokenId, fail));
        return p;
      });
      principalP.catch(fail);

      call.on("data", (raw: ConnectRequest) => {
        let msg: ConnectRequest;
        try {
          msg = decoded(raw);
        } catch (err) {
          return fail(err);
        }
        const body = msg.body;
        if (!body) return fail(invalidArgument("body", "empty message"));
        switch (body.$case) {
          case "hello":
            chain = chain.then(async () => {
              await principalP;
              const h = body.hello;
              if (host !== null) throw invalidArgument("hello", "sent twice on one stream");
              v.hostName("hello.host", h.host);
              // Before the token may bind to the host: the certificate must name it.
              if (opts.certificateNamesHost) checkCertificateHost(call, h.host);
              await maySpeakFor(deps, await principalP, h.host);
              const cap = h.capacity;
              if (!cap || cap.vcpus <= 0 || cap.memoryMb <= 0 || cap.diskGb < 0) throw invalidArgument("hello.capacity", "vcpus and memory_mb must be positive");
              for (const [field, value, max] of HELLO_TEXT_LIMITS(h)) {
                if (value.length > max) throw invalidArgument(`hello.${field}`, `must be at most ${max} characters (got ${value.length})`);
              }
              if (h.tunnelIp && parseIpv4(h.tunnelIp) === null) throw invalidArgument("hello.tunnel_ip", "must be an IPv4 address, or empty");
              const volumePools = reportedPools("hello.volume_pools", h.volumePools);
              const ack = await conductor.hello({
                host: h.host,
                hypervisorType: h.hypervisorType || "unknown",
                version: h.version,
                zone: h.zone || "nova",
                vcpus: cap.vcpus,
                memoryMb: cap.memoryMb,
                diskGb: cap.diskGb,
                migrationUri: h.migrationUri,
                architecture: h.architecture,
                allocation: helloAllocation(h.allocation, cap),
                natsPublicKey: h.natsPublicKey,
                tunnelIp: h.tunnelIp,
                volumePools,
              }, gone.signal);
              host = h.host;
              natsPublicKey = h.natsPublicKey;
              deps.log.info({ host, hypervisor: h.hypervisorType, version: h.version }, "agent connected");
              call.write({
                body: {
                  $case: "helloAck",
                  helloAck: { ...ack, natsCredential: ack.natsCredential ? natsCredentialToProto(ack.natsCredential) : undefined, opSigningKeys: [...ack.opSigningKeys] },
                },
              });
              // Its network follows, now and after every change, while the stream is open.
              const connected = h.host;
              whenOver(
                call,
                conductor.watchNetwork(connected, (u) => {
                  if (failed) return;
                  call.write({ body: { $case: "networkUpdate", networkUpdate: networkUpdateToProto(u) } });
                }),
              );
            });
            chain.catch(fail);
            return;
          case "report":
            chain = chain.then(async () => {
              if (!host) throw invalidArgument("hello", "the first message must be hello");
              const r = body.report;
              const instances = new Map<string, PowerState>();
              for (const i of r.instances) instances.set(i.serverId, powerStateFromProto(i.powerState) ?? "NOSTATE");
              await conductor.report({
                host,
                vcpus: r.capacity?.vcpus ?? 0,
                memoryMb: r.capacity?.memoryMb ?? 0,
                diskGb: r.capacity?.diskGb ?? 0,
                freeMemoryMb: r.freeMemoryMb,
                freeDiskGb: r.freeDiskGb,
                instances,
                time: agentTime("report.time", r.time) ?? new Date(),
                volumePools: reportedPools("report.volume_pools", r.volumePools),
              });
            });
            chain.catch(fail);
            return;
          case "opResult": {
            const res = body.opResult;
            // One agent's results run in parallel per server: bounded, so a
            // stream cannot hold the database's connections with made-up servers.
            // Results of one server (or one volume) apply in order; others' in parallel.
            const key = res.serverId || `volume:${res.volumeId}`;
            if (!perServer.has(key) && perServer.size >= MAX_SERVERS_IN_FLIGHT) {
              return fail(
                limitExceeded({
                  limit: "agent_results_in_flight",
                  subject: `host:${host ?? ""}`,
                  description: `more than ${MAX_SERVERS_IN_FLIGHT} servers' results in flight on one agent stream`,
                  retryAfterMs: 1000,
                }),
              );
            }
            const prev = perServer.get(key) ?? chain;
            const next = prev.then(async () => {
              if (!host) throw invalidArgument("hello", "the first message must be hello");
              await conductor.result(
                {
                opId: res.opId,
                error: res.error && (res.error.code || res.error.message) ? { code: res.error.code, message: res.error.message, retryable: res.error.retryable } : null,
                powerState: powerStateFromProto(res.powerState),
                startTime: agentTime("op_result.start_time", res.startTime) ?? null,
                finishTime: agentTime("op_result.finish_time", res.finishTime) ?? null,
                note: res.note,
                  snapshot: res.snapshot ? { sizeBytes: res.snapshot.sizeBytes, checksum: res.snapshot.checksum, diskFormat: res.snapshot.diskFormat } : null,
                  volume: res.volume
                    ? {
                        sizeBytes: res.volume.sizeBytes,
                        export: res.volume.export ? { host: res.volume.export.host, port: res.volume.export.port, exportName: res.volume.export.exportName } : null,
                        device: res.volume.device,
                      }
                    : null,
                },
                host,
                key,
              );
              if (!failed) call.write({ body: { $case: "opResultAck", opResultAck: { opId: res.opId } } });
            });
            perServer.set(key, next);
            next.catch(fail).finally(() => {
              if (perServer.get(key) === next) perServer.delete(key);
            });
            return;
          }
          case "natsCredentialRequest":
            chain = chain.then(async () => {
              if (!host) throw invalidArgument("hello", "the first message must be hello");
              // The token is checked again: a revoked host gets no new credential.
              await maySpeakFor(deps, await authenticate(deps.pool, call.metadata), host);
              const c = conductor.renewCredential(host, natsPublicKey);
              if (!failed) call.write({ body: { $case: "natsCredential", natsCredential: natsCredentialToProto(c) } });
            });
            chain.catch(fail);
            return;
          case "opProgress": {
            // Best effort: progress is not acknowledged and may be dropped.
            const p = body.opProgress;
            if (!host) return fail(invalidArgument("hello", "the first message must be hello"));
            const stage = fromEnum(PbTaskState, "TASK_STATE_", p.taskState) as TaskState | null;
            if (progressInFlight >= MAX_PROGRESS_IN_FLIGHT) {
              deps.log.debug({ host, op_id: p.opId }, "op progress dropped: too much in flight on this stream");
              return;
            }
            progressInFlight++;
            conductor
              .progress({ opId: p.opId, percent: p.percent, message: p.message, stage }, host)
              .catch((err: unknown) => {
                deps.log.debug({ err, op_id: p.opId }, "op progress not recorded");
              })
              .finally(() => progressInFlight--);
            return;
          }
        }
      });
      call.on("end", () => {
        // A failed chain was answered by fail(); waiting for it must not
        // reject again (nothing would handle that rejection).
        void chain
          .catch((err: unknown) => deps.log.debug({ err, host }, "agent stream ended after a failure already answered"))
          .then(() => Promise.allSettled(perServer.values()))
          .then(() => {
            if (!failed) call.end();
          })
          .catch((err: unknown) => deps.log.debug({ err, host }, "agent stream could not be ended (the client had gone)"));
      });
      // A failed stream ends through fail() above; the event is logged for tracing only.
      call.on("error", (err: unknown) => deps.log.debug({ err, host }, "agent stream error"));
    },
  };
}

/** The latest time a DATETIME column holds. */
const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59);

/** A timestamp an agent sent: absent, or a time the database can hold (INVALID_ARGUMENT naming `field` otherwise). */
function agentTime(field: string, d: Date | undefined): Date | undefined {
  if (d === undefined) return undefined;
  const ms = d.getTime();
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_TIME_MS) throw invalidArgument(field, "must be a time from 1970 to 9999");
  return d;
}

/**
 * Servers whose results one agent stream may have in flight at once (an
 * agent holds at most max(64, 4 × its concurrency) ops, so a real one stays
 * far below it, even re-sending everything after a reconnect).
 */
const MAX_SERVERS_IN_FLIGHT = 1024;
/** Progress reports of one agent stream being recorded at once; more are dropped (progress is best effort). */
const MAX_PROGRESS_IN_FLIGHT = 8;

/**
 * Whether the stream's token may say Hello as `host`: an admin token speaks
 * for any host; an agent token only for the host it is bound to. An agent
 * token not bound yet (an enrolment token) is bound to `host` now, once,
 * unless another agent token holds the host.
 */
async function maySpeakFor(deps: RpcDeps, p: Principal, host: string): Promise<void> {
  if (p.role === "admin") return;
  if (p.host === null) {
    const bound = await bindAgentToken(deps.pool, p.tokenId, host).catch((err: unknown) => {
      if (err instanceof NotEnrolmentError) throw permissionDenied(err.message);
      throw err instanceof HostTakenError ? permissionDenied(`host ${JSON.stringify(host)} is enrolled with another agent token`) : err;
    });
    if (bound === host) {
      deps.log.info({ token: p.tokenId, host }, "enrolment token bound to its host");
      return;
    }
    if (bound === null) throw permissionDenied("the token was revoked");
    throw permissionDenied(`this token speaks for host ${JSON.stringify(bound)}, not ${JSON.stringify(host)}`);
  }
  if (p.host !== host) throw permissionDenied(`this token speaks for host ${JSON.stringify(p.host)}, not ${JSON.stringify(host)}`);
}

function natsCredentialToProto(c: NatsCredential): { jwt: string; expireTime: Date } {
  return { jwt: c.jwt, expireTime: c.expiresAt };
}

/** A Hello's HostAllocation, checked: ratios positive, reservations within the host. */
function helloAllocation(a: HostAllocation | undefined, cap: { vcpus: number; memoryMb: number; diskGb: number }) {
  const out: Record<string, number> = {};
  if (!a) return out;
  const ratio = (v: number | undefined, field: string, key: string) => {
    if (v === undefined) return;
    if (!Number.isFinite(v) || v <= 0) throw invalidArgument(`hello.allocation.${field}`, "must be a positive number");
    out[key] = v;
  };
  const reserved = (v: number | undefined, field: string, key: string, total: number) => {
    if (v === undefined) return;
    if (!Number.isInteger(v) || v < 0 || v >= total) throw invalidArgument(`hello.allocation.${field}`, `must be a whole number from 0 to below the host's ${total}`);
    out[key] = v;
  };
  ratio(a.cpuAllocationRatio, "cpu_allocation_ratio", "cpuAllocationRatio");
  ratio(a.ramAllocationRatio, "ram_allocation_ratio", "ramAllocationRatio");
  ratio(a.diskAllocationRatio, "disk_allocation_ratio", "diskAllocationRatio");
  reserved(a.reservedHostMemoryMb, "reserved_host_memory_mb", "reservedMemoryMb", cap.memoryMb);
  reserved(a.reservedHostCpus, "reserved_host_cpus", "reservedVcpus", cap.vcpus);
  reserved(a.reservedHostDiskGb, "reserved_host_disk_gb", "reservedDiskGb", Math.max(1, cap.diskGb));
  return out;
}
