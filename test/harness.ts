import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import mysql from "mysql2/promise";
import { connect } from "nats";
import pino from "pino";
import type { Logger } from "pino";
import { loggerOptions } from "../controller/log-context.js";
import { ServiceState } from "../gen/novamesh/compute/v1/host.js";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import { Image, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import type { Server, WatchServersResponse } from "../gen/novamesh/compute/v1/server.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { setDefaultLimits } from "../controller/store/quotas.js";
import { QUOTA_RESOURCES, type QuotaResource } from "../controller/domain/quota.js";
import type { Operation } from "../gen/novamesh/compute/v1/operation.js";
import { ErrorInfo } from "../gen/google/rpc/error_details.js";
import { Controller } from "../controller/controller.js";
import { decodeStatusDetails } from "../controller/api/status.js";
import type { ControllerConfig } from "../controller/config.js";

export const MYSQL_URL = process.env.NOVAMESH_TEST_MYSQL ?? "mysql://root@127.0.0.1:3306";
export const NATS_URL = process.env.NOVAMESH_TEST_NATS ?? "nats://127.0.0.1:4222";

export { clients, promised, type Clients, type Promised } from "./clients.js";
import { clients, type Clients } from "./clients.js";

/** The files `scripts/certs.sh --dir <dir>` makes (see there). */
export interface TlsFiles {
  readonly dir: string;
  readonly ca: string;
  readonly caKey: string;
  readonly cert: string;
  readonly key: string;
  /** An agent's client certificate and key, by host name. */
  agent(host: string): { cert: string; key: string };
}

/** Makes a CA, the controller's certificate and the agents' client certificates with scripts/certs.sh (openssl). */
export async function makeCerts(dir: string, agents: readonly string[] = []): Promise<TlsFiles> {
  const script = fileURLToPath(new URL("../scripts/certs.sh", import.meta.url));
  await promisify(execFile)("bash", [script, "--dir", dir, ...agents.flatMap((a) => ["--agent", a])]);
  return {
    dir,
    ca: join(dir, "ca.pem"),
    caKey: join(dir, "ca-key.pem"),
    cert: join(dir, "controller.pem"),
    key: join(dir, "controller-key.pem"),
    agent: (host) => ({ cert: join(dir, `agent-${host}.pem`), key: join(dir, `agent-${host}-key.pem`) }),
  };
}

/** Channel credentials that trust the CA in `caFile` (and present a client certificate when given). */
export function tlsCredentials(caFile: string, client?: { cert: string; key: string }): grpc.ChannelCredentials {
  const read = (f: string) => readFileSync(f);
  return grpc.credentials.createSsl(read(caFile), client ? read(client.key) : null, client ? read(client.cert) : null);
}

/**
 * One isolated test environment: its own database and JetStream stream on the
 * machine's MariaDB and NATS, dropped at the end.
 */
export class TestEnv {
  readonly id = randomBytes(4).toString("hex");
  readonly dbName = `nm_test_${this.id}`;
  readonly stream = `NMTEST_${this.id}`;
  readonly prefix = `nmtest_${this.id}.ops`;
  /** JetStream object store bucket of image bytes. */
  readonly imageBucket = `nmtest_images_${this.id}`;
  readonly adminToken = `admin-${this.id}`;
  readonly controllers: Controller[] = [];
  /**
   * The certificates controllers of this environment serve with; none (the
   * default): they run with --plaintext, and so do its clients and agents.
   */
  tls: TlsFiles | undefined;

  /** Credentials of this environment's clients: TLS trusting its CA, or plaintext. */
  credentials(): grpc.ChannelCredentials {
    return this.tls ? tlsCredentials(this.tls.ca) : grpc.credentials.createInsecure();
  }

  /** The agent flags for reaching this environment's controllers. */
  agentConnection(): string[] {
    return this.tls ? ["--tls-ca", this.tls.ca] : ["--plaintext"];
  }

  config(over: Partial<ControllerConfig> = {}): Partial<ControllerConfig> {
    return {
      listen: "127.0.0.1:0",
      ...(this.tls ? { tlsCert: this.tls.cert, tlsKey: this.tls.key, plaintext: false } : { plaintext: true }),
      databaseUrl: `${MYSQL_URL}/${this.dbName}`,
      natsUrl: NATS_URL,
      opsStream: this.stream,
      opsSubjectPrefix: this.prefix,
      imageBucket: this.imageBucket,
      adminToken: this.adminToken,
      reportIntervalSeconds: 1,
      serviceDownTimeSeconds: 5,
      ...over,
    };
  }

  /**
   * The default quota limits the environment's first controller sets: none
   * (-1) by default, so that tests which fill hosts are not held by the
   * built-in defaults; null keeps the built-in ones. A project's own limits
   * are the quota tests' to set.
   */
  defaultLimits: Partial<Record<QuotaResource, number>> | null = Object.fromEntries(QUOTA_RESOURCES.map((r) => [r, -1]));
  private limitsSet = false;

  /** Starts a controller of this environment; its log goes to `log` (default: silent, or NOVAMESH_TEST_LOG's level on stdout). */
  async startController(over: Partial<ControllerConfig> = {}, log?: Logger): Promise<Controller> {
    const c = new Controller(this.config(over), log ?? pino(loggerOptions({ level: process.env.NOVAMESH_TEST_LOG ?? "silent" })));
    await c.start();
    this.controllers.push(c);
    if (!this.limitsSet && this.defaultLimits) {
      // Written to the database (the controller has migrated it): a test's controller may take no API call from this
      // environment's admin token (another secret, client certificates required).
      const conn = await mysql.createConnection(`${MYSQL_URL}/${this.dbName}`);
      try {
        await setDefaultLimits(conn, this.defaultLimits);
      } finally {
        await conn.end();
      }
      this.limitsSet = true;
    }
    return c;
  }

  async stopController(c: Controller): Promise<void> {
    await c.stop();
    this.controllers.splice(this.controllers.indexOf(c), 1);
  }

  address(c: Controller): string {
    return `127.0.0.1:${c.port}`;
  }

  admin(c: Controller): Clients {
    return clients(this.address(c), this.adminToken, this.credentials());
  }

  /** Issues a token through the API and returns clients that use it. */
  async as(c: Controller, projectId: string, role: Role = Role.ROLE_MEMBER): Promise<Clients & { token: string }> {
    const res = await this.admin(c).identity.createToken({ projectId, role, description: "test" });
    return { ...clients(this.address(c), res.secret, this.credentials()), token: res.secret };
  }

  /** Registers a public image (under `id` if given) and returns its id. */
  async image(c: Controller, name = "cirros", id?: string): Promise<string> {
    const res = await this.admin(c).images.registerImage({
      image: Image.fromPartial({ id, name, visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC, diskFormat: "qcow2", containerFormat: "bare" }),
    });
    return res.image!.id;
  }

  async sql<T = Record<string, unknown>>(query: string, params: unknown[] = []): Promise<T[]> {
    const conn = await mysql.createConnection(`${MYSQL_URL}/${this.dbName}`);
    try {
      const [rows] = await conn.query(query, params);
      return rows as T[];
    } finally {
      await conn.end();
    }
  }

  /**
   * Stops the controllers and drops the database and streams. Every step
   * runs; what failed is thrown at the end. A stream that was never made
   * (no controller started, or no image stored) is not a failure.
   */
  async cleanup(): Promise<void> {
    const errors: unknown[] = [];
    const step = async (fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    };
    for (const c of [...this.controllers]) await step(() => this.stopController(c));
    await step(async () => {
      const conn = await mysql.createConnection(MYSQL_URL);
      try {
        await conn.query(`DROP DATABASE IF EXISTS \`${this.dbName}\``);
      } finally {
        await conn.end();
      }
    });
    await step(async () => {
      const nc = await connect({ servers: NATS_URL });
      try {
        const jsm = await nc.jetstreamManager();
        for (const name of [this.stream, `OBJ_${this.imageBucket}`]) await step(() => jsm.streams.delete(name).catch(ignoreStreamNotFound));
      } finally {
        await nc.close();
      }
    });
    if (errors.length === 1) throw errors[0];
    if (errors.length) throw new AggregateError(errors, `cleaning up test environment ${this.id}`);
  }
}

/** JetStream's "stream not found" (API error 10059). */
function ignoreStreamNotFound(err: unknown): void {
  if ((err as { api_error?: { err_code?: number } }).api_error?.err_code === 10059) return;
  throw err;
}

/** Polls `fn` until it returns a truthy value or the deadline passes. */
export async function eventually<T>(fn: () => Promise<T | undefined | null | false>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? "condition"}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

/** Waits until every server satisfies `pred` (by GetServer). */
export async function waitServers(c: Clients, ids: readonly string[], pred: (s: Server) => boolean, what: string, timeoutMs = 30_000): Promise<Server[]> {
  return eventually(
    async () => {
      const all = await Promise.all(ids.map((id) => c.servers.getServer({ id }).then((r) => r.server!)));
      return all.every(pred) ? all : null;
    },
    { timeoutMs, what, intervalMs: 200 },
  );
}

/**
 * Checks every host's usage against the allocations that hold it: each
 * host's used vCPU, RAM, disk and VM count equal the sum of its allocation
 * rows. Returns usage by host name.
 */
/** What a host holds: vCPUs, MiB of RAM, GiB of disk and servers. */
export type HostUsage = { vcpus: number; ram: number; disk: number; vms: number };

/** m1.small, as a host's usage counts it. */
export const M1_SMALL = { vcpus: 1, ram: 2048, disk: 20 } as const;

/** `u` with `n` m1.small servers more (sign 1) or fewer (sign -1). */
export function plusSmall(u: HostUsage, sign: 1 | -1, n = 1): HostUsage {
  return {
    vcpus: u.vcpus + sign * n * M1_SMALL.vcpus,
    ram: u.ram + sign * n * M1_SMALL.ram,
    disk: u.disk + sign * n * M1_SMALL.disk,
    vms: u.vms + sign * n,
  };
}

export async function assertCapacityExact(env: TestEnv, admin: Clients): Promise<Map<string, HostUsage>> {
  const rows = await env.sql<{ host: string; vcpus: number | null; ram: number | null; disk: number | null; n: number }>(
    `SELECT c.host, SUM(a.vcpus) AS vcpus, SUM(a.memory_mb) AS ram, SUM(a.disk_gb) AS disk, COUNT(a.node_id) AS n
     FROM compute_nodes c LEFT JOIN allocations a ON a.node_id = c.id GROUP BY c.host`,
  );
  const byHost = new Map(rows.map((r) => [r.host, { vcpus: Number(r.vcpus ?? 0), ram: Number(r.ram ?? 0), disk: Number(r.disk ?? 0), vms: Number(r.n) }]));
  const usage = new Map<string, HostUsage>();
  for (const h of await admin.hypervisors()) {
    const used = { vcpus: h.vcpusUsed, ram: h.memoryMbUsed, disk: h.localGbUsed, vms: h.runningVms };
    assert.deepEqual(used, byHost.get(h.hostname) ?? { vcpus: 0, ram: 0, disk: 0, vms: 0 }, `usage of ${h.hostname} equals its allocations`);
    usage.set(h.hostname, used);
  }
  return usage;
}

/** Waits until a server shows `status` with no task running, and returns it. */
export async function settled(c: Clients, id: string, status: ServerStatus, timeoutMs = 30_000): Promise<Server> {
  try {
    const [s] = await waitServers(c, [id], (x) => x.status === status && x.taskState === TaskState.TASK_STATE_UNSPECIFIED, ServerStatus[status], timeoutMs);
    return s!;
  } catch (err) {
    // Say where the server got stuck.
    const s = await c.servers.getServer({ id }).then((r) => r.server, () => undefined);
    const action = await c.servers.listServerActions({ serverId: id }).then((r) => r.actions[0], () => undefined);
    const where = s ? `${ServerStatus[s.status]} task ${TaskState[s.taskState]} on "${s.host}"${s.fault ? `, fault ${s.fault.code}: ${s.fault.message}` : ""}` : "unknown";
    const last = action ? `; last action ${action.action}: ${action.events.map((e) => `${e.name}@${e.host}:${e.result}`).join(", ")}` : "";
    throw new Error(`${(err as Error).message}; server ${id} is ${where}${last}`);
  }
}

/** Waits until `n` compute services report as up. */
export async function servicesUp(admin: Clients, n: number): Promise<void> {
  await eventually(async () => (await admin.hosts.listServices({})).services.filter((s) => s.state === ServiceState.SERVICE_STATE_UP).length === n, {
    what: `${n} agents up`,
    timeoutMs: 30_000,
  });
}

/**
 * Runs `fn` with every compute service but `host` disabled, so that what it
 * boots lands on `host`; enables the others again afterwards (also those
 * that were disabled before).
 */
/**
 * Volume steps a test needs to succeed, as `member` (each waits for its
 * operation through `admin` and asserts it SUCCEEDED): a 1 GiB volume,
 * blank or from `imageId`; an attachment of one to a server (its id).
 */
export function volumeSteps(member: Clients, admin: Clients) {
  const succeeded = async (name: string) => {
    const op = (await admin.operations.waitOperation({ name, timeoutSeconds: 30 })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(op.error));
  };
  return {
    async volume(name: string, imageId = ""): Promise<string> {
      const c = await member.volumes.createVolume({ name, sizeGb: 1, imageId, requestId: `create-${name}` });
      await succeeded(c.operation!.name);
      return c.volume!.id;
    },
    async attach(serverId: string, volumeId: string): Promise<string> {
      const att = await member.servers.attachVolume({ id: serverId, volumeId });
      await succeeded(att.operation!.name);
      return att.attachmentId;
    },
  };
}

export async function withOnlyHost<T>(admin: Clients, host: string, fn: () => Promise<T>): Promise<T> {
  const others = (await admin.hosts.listServices({})).services.map((s) => s.host).filter((h) => h !== host);
  for (const h of others) await admin.hosts.disableService({ host: h, reason: `test: place on ${host}` });
  try {
    return await fn();
  } finally {
    for (const h of others) await admin.hosts.enableService({ host: h });
  }
}

/** Awaits a call that must fail; returns its code, message and standard details. */
export async function failure(
  p: Promise<unknown>,
): Promise<{ code: number; message: string; reason?: string; metadata: Record<string, string>; fields: string[]; quota: { subject: string; description: string }[] }> {
  const e = (await p.then(
    () => null,
    (err: grpc.ServiceError) => err,
  )) as grpc.ServiceError | null;
  assert.ok(e, "the call must fail");
  const d = decodeStatusDetails(e.metadata);
  return {
    code: e.code,
    message: e.details,
    reason: d.errorInfo?.reason,
    metadata: d.errorInfo?.metadata ?? {},
    fields: d.badRequest?.fieldViolations.map((v) => v.field) ?? [],
    quota: d.quotaFailure?.violations.map((v) => ({ subject: v.subject, description: v.description })) ?? [],
  };
}

/** A failed operation's error: gRPC code, message and its ErrorInfo's reason and metadata. */
export function operationError(op: Operation): { code: number; message: string; reason?: string; metadata: Record<string, string> } {
  assert.ok(op.error, `operation ${op.name} has an error`);
  const any = op.error.details.find((d) => d.typeUrl === "type.googleapis.com/google.rpc.ErrorInfo");
  const info = any ? ErrorInfo.decode(any.value) : undefined;
  return { code: op.error.code, message: op.error.message, reason: info?.reason, metadata: info?.metadata ?? {} };
}

/**
 * A server's recorded history from the change log (WatchServers from the
 * start), as "VM_STATE/TASK_STATE" with repeats folded, read until `until`
 * holds for it.
 */
export async function history(c: Clients, id: string, until: (states: string[]) => boolean, timeoutMs = 10_000): Promise<string[]> {
  const states: string[] = [];
  const stream = c.servers.raw.watchServers({ afterIndex: 1, serverId: id, allProjects: false, sendInitialState: false }, c.servers.metadata());
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`history of ${id} so far: ${states.join(" ")}`)), timeoutMs);
      stream.on("data", (ev: WatchServersResponse) => {
        const st = `${VmState[ev.server!.vmState]!.slice(9)}/${TaskState[ev.server!.taskState]!.slice(11)}`;
        if (states.at(-1) !== st) states.push(st);
        if (until(states)) {
          clearTimeout(timer);
          resolve(states);
        }
      });
      stream.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  } finally {
    stream.cancel();
  }
}
