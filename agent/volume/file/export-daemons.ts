/**
 * The NBD exports of the file backend: one qemu-storage-daemon per client
 * compute host (see `daemon-process.ts`), each with one export per
 * attachment, added and removed at runtime over QMP. A volume's file is
 * opened once in its daemon (a block node named from the volume id) and
 * shared by that host's exports of it.
 *
 * Files, per client host, in `<dir>/c-<hash of the client>/`:
 *   daemon.json   { client, port, address } — written before the daemon starts
 *   pid           the daemon's pid file
 *   qmp.sock      its QMP monitor
 *   exports.json  the exports it serves: attachment, volume, file, node
 * A daemon outlives the agent; `load` adopts it, and reconciles
 * exports.json with what the daemon says it exports (an export the file
 * does not name is removed; a record whose export is gone is served again).
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { bestEffort } from "../../best-effort.js";
import { DriverError } from "../../drivers/errors.js";
import { readIfExists, writeAtomic } from "../../network/linux/files.js";
import type { ExportInfo } from "../backend.js";
import { KeyedQueue } from "../../keyed-queue.js";
import { daemonPid, killHard, startDaemon, stopDaemon, type DaemonSpec } from "./daemon-process.js";
import { withQmp, type QmpClient } from "./qmp.js";

/** How exports are served. */
export interface ExportDaemonsOptions {
  /** Directory of the daemons' files (short: unix socket paths are at most 107 bytes). */
  readonly dir: string;
  /** The volume host's storage address the daemons listen on (and compute hosts reach). */
  readonly address: string;
  /** Ports the daemons may listen on, one per client host: [first, last]. */
  readonly ports: readonly [number, number];
  /** qemu's x509 server directory (ca-cert.pem, server-cert.pem, server-key.pem). */
  readonly tlsDir: string;
  /** The qemu-storage-daemon executable. */
  readonly binary: string;
  /** Time a daemon start or a QMP command may take, milliseconds. */
  readonly timeoutMs: number;
  readonly log: Logger;
}

/** One export, as recorded. */
export interface ExportRecord {
  readonly attachmentId: string;
  readonly volumeId: string;
  readonly path: string;
}

interface Daemon {
  readonly spec: DaemonSpec;
  readonly dir: string;
  readonly exports: Map<string, ExportRecord>;
}

const hash = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 24);
/** The block node of a volume in a daemon (node names: a letter, then at most 31 characters). */
export const nodeName = (volumeId: string) => `v${hash(volumeId)}`;
const exportId = (attachmentId: string) => `x${hash(attachmentId)}`;

export class ExportDaemons {
  private readonly daemons = new Map<string, Daemon>();
  /** Changes to one client host's daemon run one after another. */
  private readonly queue = new KeyedQueue();

  constructor(private readonly options: ExportDaemonsOptions) {
    const [first, last] = options.ports;
    if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || last > 65535 || first > last) {
      throw new RangeError(`export ports ${first}-${last}: a range of TCP ports, first to last`);
    }
    const socket = this.spec("x", first).spec.socket;
    if (Buffer.byteLength(socket) > 107) throw new RangeError(`export state directory ${options.dir} is too long for a unix socket path (${socket})`);
  }

  /** A client host's daemon's files; `address`: the one it was started on (default: the configured one). */
  private spec(client: string, port: number, address = this.options.address): { spec: DaemonSpec; dir: string } {
    const dir = join(this.options.dir, `c-${hash(client).slice(0, 16)}`);
    const spec = { client, port, address, tlsDir: this.options.tlsDir, pidFile: join(dir, "pid"), socket: join(dir, "qmp.sock") };
    return { spec, dir };
  }

  /** Adopts the daemons a previous agent left running; removes the files of those that are gone. */
  async load(): Promise<void> {
    await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.options.dir)) {
      const dir = join(this.options.dir, name);
      const text = await readIfExists(join(dir, "daemon.json"));
      const record = text === undefined ? undefined : (JSON.parse(text) as { client: string; port: number; address?: string });
      const found = record ? this.spec(record.client, record.port, record.address) : undefined;
      const pid = found ? await daemonPid(found.spec) : undefined;
      if (!record || !found || pid === undefined) {
        this.options.log.warn({ dir, client: record?.client }, "export daemon is not running; its exports are gone");
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      const daemon: Daemon = { ...found, exports: new Map() };
      const recorded = JSON.parse((await readIfExists(join(dir, "exports.json"))) ?? "[]") as ExportRecord[];
      for (const r of recorded) daemon.exports.set(r.attachmentId, r);
      this.daemons.set(record.client, daemon);
      try {
        await this.reconcile(daemon);
      } catch (err) {
        // A daemon that does not answer its monitor serves nothing the agent can manage: it goes, and its exports with it.
        this.options.log.warn({ err, client: record.client, pid }, "export daemon does not answer; killing it, its exports are gone");
        killHard(pid);
        this.daemons.delete(record.client);
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      if (daemon.exports.size === 0) await this.stop(daemon);
    }
  }

  /** Makes the daemon's exports those recorded (serves recorded exports it lost again, removes exports nobody recorded). */
  private async reconcile(daemon: Daemon): Promise<void> {
    await withQmp(daemon.spec.socket, this.options.timeoutMs, async (qmp) => {
      const running = new Set((await qmp.execute<{ id: string }[]>("query-block-exports")).map((e) => e.id));
      const known = new Set([...daemon.exports.values()].map((r) => exportId(r.attachmentId)));
      for (const id of running) {
        if (known.has(id)) continue;
        this.options.log.warn({ client: daemon.spec.client, exportId: id }, "export daemon serves an export no record names; removing it");
        await this.delExport(qmp, id);
      }
      await this.dropUnusedNodes(qmp, daemon);
      for (const r of [...daemon.exports.values()]) {
        if (running.has(exportId(r.attachmentId))) continue;
        // An agent stopped between taking it down and adding it again (an extend), or before recording an unexport (which is sent again).
        this.options.log.warn({ client: daemon.spec.client, attachmentId: r.attachmentId }, "a recorded export is not served; serving it again");
        try {
          await this.serve(qmp, r);
        } catch (err) {
          this.options.log.error({ err, client: daemon.spec.client, attachmentId: r.attachmentId }, "a recorded export could not be served again; dropping its record");
          daemon.exports.delete(r.attachmentId);
        }
      }
    });
    await this.save(daemon);
  }

  private async save(daemon: Daemon): Promise<void> {
    await writeAtomic(join(daemon.dir, "exports.json"), JSON.stringify([...daemon.exports.values()], null, 2));
  }

  private info(daemon: Daemon, r: ExportRecord): ExportInfo {
    const { client, address, port } = daemon.spec;
    return { volumeId: r.volumeId, attachmentId: r.attachmentId, host: address, port, exportName: r.attachmentId, client };
  }

  /**
   * Forgets the daemons that died while the agent ran (killed, crashed):
   * their exports are gone, so the volumes are free to export again. Each
   * is logged.
   */
  async prune(): Promise<void> {
    for (const daemon of [...this.daemons.values()]) {
      await this.queue.run(daemon.spec.client, async () => {
        if (this.daemons.get(daemon.spec.client) !== daemon || (await daemonPid(daemon.spec)) !== undefined) return;
        this.options.log.warn({ client: daemon.spec.client, exports: [...daemon.exports.keys()] }, "export daemon died; its exports are gone");
        this.daemons.delete(daemon.spec.client);
        await rm(daemon.dir, { recursive: true, force: true });
      });
    }
  }

  /** Every export, by attachment id. */
  list(): ExportInfo[] {
    return [...this.daemons.values()].flatMap((d) => [...d.exports.values()].map((r) => this.info(d, r))).sort((a, b) => a.attachmentId.localeCompare(b.attachmentId));
  }

  /** The export of an attachment, if any. */
  find(attachmentId: string): ExportInfo | undefined {
    return this.list().find((e) => e.attachmentId === attachmentId);
  }

  /** The client host a volume is exported to, if any. */
  clientOf(volumeId: string): string | undefined {
    return this.list().find((e) => e.volumeId === volumeId)?.client;
  }

  /** Exports volume file `path` for one attachment to `client`, starting that host's daemon if need be. */
  add(client: string, record: ExportRecord): Promise<ExportInfo> {
    return this.queue.run(client, async () => {
      const daemon = this.daemons.get(client) ?? (await this.start(client));
      await withQmp(daemon.spec.socket, this.options.timeoutMs, (qmp) => this.serve(qmp, record));
      daemon.exports.set(record.attachmentId, record);
      await this.save(daemon);
      return this.info(daemon, record);
    });
  }

  /** Serves an export (opening its volume's node when the daemon has not), unless the daemon serves it already. */
  private async serve(qmp: QmpClient, record: ExportRecord): Promise<void> {
    const node = nodeName(record.volumeId);
    const nodes = await qmp.execute<{ "node-name": string }[]>("query-named-block-nodes", { flat: true });
    if (!nodes.some((n) => n["node-name"] === node)) {
      await qmp.execute("blockdev-add", { driver: "qcow2", "node-name": node, file: { driver: "file", filename: record.path } });
    }
    const running = await qmp.execute<{ id: string }[]>("query-block-exports");
    if (!running.some((e) => e.id === exportId(record.attachmentId))) {
      await qmp.execute("block-export-add", { type: "nbd", id: exportId(record.attachmentId), "node-name": node, name: record.attachmentId, writable: true });
    }
  }

  /** Ends an attachment's export; the daemon stops when it serves nothing more. */
  async remove(attachmentId: string): Promise<void> {
    const client = this.find(attachmentId)?.client;
    if (client === undefined) return;
    await this.queue.run(client, async () => {
      const daemon = this.daemons.get(client);
      if (!daemon?.exports.has(attachmentId)) return;
      await withQmp(daemon.spec.socket, this.options.timeoutMs, async (qmp) => {
        await this.delExport(qmp, exportId(attachmentId));
        daemon.exports.delete(attachmentId);
        await this.dropUnusedNodes(qmp, daemon);
      });
      await this.save(daemon);
      if (daemon.exports.size === 0) await this.stop(daemon);
    });
  }

  /**
   * Runs `fn` on the QMP monitor of the daemon that has `volumeId` open,
   * with its block node's name; resolves undefined when no daemon has it.
   * `reexport`: the volume's exports are taken down around `fn` and added
   * again (an NBD export does not let its node be resized; connected
   * clients are dropped and see the new size when they reconnect).
   */
  async onVolume<T>(volumeId: string, fn: (qmp: QmpClient, node: string) => Promise<T>, reexport = false): Promise<{ value: T } | undefined> {
    const client = this.clientOf(volumeId);
    if (client === undefined) return undefined;
    return this.queue.run(client, async () => {
      const daemon = this.daemons.get(client);
      const mine = [...(daemon?.exports.values() ?? [])].filter((r) => r.volumeId === volumeId);
      if (!daemon || mine.length === 0) return undefined;
      const node = nodeName(volumeId);
      return withQmp(daemon.spec.socket, this.options.timeoutMs, async (qmp) => {
        if (!reexport) return { value: await fn(qmp, node) };
        for (const r of mine) await this.delExport(qmp, exportId(r.attachmentId));
        try {
          return { value: await fn(qmp, node) };
        } finally {
          for (const r of mine) await this.serve(qmp, r);
        }
      });
    });
  }

  /** Removes an export and waits until it is gone (a hard delete drops its connections). */
  private async delExport(qmp: QmpClient, id: string): Promise<void> {
    const present = async () => (await qmp.execute<{ id: string }[]>("query-block-exports")).some((e) => e.id === id);
    if (!(await present())) return;
    await qmp.execute("block-export-del", { id, mode: "hard" });
    const deadline = Date.now() + this.options.timeoutMs;
    while (await present()) {
      if (Date.now() > deadline) throw new DriverError("VOLUME_COMMAND_FAILED", `export ${id} was still there ${this.options.timeoutMs} ms after its removal`, { retryable: true });
      await sleep(20);
    }
  }

  /** Closes the block nodes of volumes the daemon no longer exports. */
  private async dropUnusedNodes(qmp: QmpClient, daemon: Daemon): Promise<void> {
    const wanted = new Set([...daemon.exports.values()].map((r) => nodeName(r.volumeId)));
    const nodes = await qmp.execute<{ "node-name": string; drv: string }[]>("query-named-block-nodes", { flat: true });
    for (const n of nodes) {
      // Only the format nodes this backend added; their file nodes (auto-named "#block…") go with them.
      if (n.drv === "qcow2" && !wanted.has(n["node-name"])) await qmp.execute("blockdev-del", { "node-name": n["node-name"] });
    }
  }

  /** Starts the daemon of a client host on the first free port of the range. */
  private async start(client: string): Promise<Daemon> {
    const taken = new Set([...this.daemons.values()].map((d) => d.spec.port));
    const [first, last] = this.options.ports;
    for (let port = first; port <= last; port++) {
      if (taken.has(port)) continue;
      const { spec, dir } = this.spec(client, port);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeAtomic(join(dir, "daemon.json"), JSON.stringify({ client, port, address: spec.address }));
      const started = Date.now();
      try {
        const pid = await startDaemon(this.options.binary, spec, this.options.timeoutMs);
        this.options.log.info({ client, port, pid, ms: Date.now() - started }, "export daemon started");
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        if (err instanceof DriverError && err.code === "EXPORT_PORT_IN_USE") continue;
        throw err;
      }
      const daemon: Daemon = { spec, dir, exports: new Map() };
      this.daemons.set(client, daemon);
      return daemon;
    }
    throw new DriverError("EXPORT_PORTS_EXHAUSTED", `no free port in ${first}-${last} for the export daemon of ${client}`, { retryable: true });
  }

  private async stop(daemon: Daemon): Promise<void> {
    await stopDaemon(daemon.spec, this.options.timeoutMs, (msg, err) => this.options.log.warn({ err, client: daemon.spec.client }, msg));
    this.daemons.delete(daemon.spec.client);
    await rm(daemon.dir, { recursive: true, force: true });
  }

  /** Stops every daemon (their exports end). */
  async stopAll(): Promise<void> {
    for (const daemon of [...this.daemons.values()]) {
      await this.queue.run(daemon.spec.client, () => bestEffort(this.options.log, "stopping an export daemon", () => this.stop(daemon), { client: daemon.spec.client }));
    }
  }
}
