/**
 * The NBD exports of the file backend: one qemu-storage-daemon per volume
 * that has exports (see `daemon-process.ts`), the volume's file opened once
 * in it (a block node named from the volume id), one NBD export per export
 * id (the export's name), and an authz list admitting exactly the hosts
 * the volume is exported to, changed at runtime (QMP `qom-set`) as exports
 * come and go. A volume exported to two hosts (a live migration's source
 * and target) is open in one process, so both reach the same data.
 *
 * Files, per volume, in `<dir>/v-<hash of the volume id>/`:
 *   daemon.json   { volumeId, port, address } — written before the daemon starts
 *   pid           the daemon's pid file
 *   qmp.sock      its QMP monitor
 *   exports.json  the exports it serves: export id, volume, file, client
 * A daemon outlives the agent; `load` adopts it, and reconciles
 * exports.json with what the daemon says it exports (an export the file
 * does not name is removed; a record whose export is gone is served again)
 * and its authz list with the records' clients.
 *
 * Daemons of the earlier layout (one per client host, `<dir>/c-<hash of the
 * client>/`, daemon.json `{ client, port, address }`) are adopted as they
 * are: guests may be using their exports, and moving an export to another
 * daemon would change its port under them. They serve on, list their
 * exports, take extends, reimages, snapshots and unexports, and stop when their last
 * export ends; a volume one of them serves can be exported again only to
 * its client host (its authz list is fixed), another host is VOLUME_IN_USE
 * until those exports end. Each is logged when adopted.
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
import { volumeError } from "../checks.js";
import { KeyedQueue } from "../../keyed-queue.js";
import { daemonPid, killHard, setAuthzClients, startDaemon, stopDaemon, type DaemonSpec } from "./daemon-process.js";
import { withQmp, type QmpClient } from "./qmp.js";

/** How exports are served. */
export interface ExportDaemonsOptions {
  /** Directory of the daemons' files (short: unix socket paths are at most 107 bytes). */
  readonly dir: string;
  /** The volume host's storage address the daemons listen on (and compute hosts reach). */
  readonly address: string;
  /** Ports the daemons may listen on, one per exported volume: [first, last]. */
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
  /** The export id (the NBD export's name). */
  readonly attachmentId: string;
  readonly volumeId: string;
  readonly path: string;
  /** The host it is made for. */
  readonly client: string;
}

interface Daemon {
  /** Its directory's name: `v-…` (a volume's), `c-…` (a client host's, the earlier layout). */
  readonly key: string;
  readonly spec: DaemonSpec;
  readonly dir: string;
  /** The client host of a daemon of the earlier layout, which admits only it. */
  readonly onlyClient?: string;
  readonly exports: Map<string, ExportRecord>;
}

const hash = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 24);
/** The block node of a volume in a daemon (node names: a letter, then at most 31 characters). */
export const nodeName = (volumeId: string) => `v${hash(volumeId)}`;
const exportId = (attachmentId: string) => `x${hash(attachmentId)}`;
const volumeKey = (volumeId: string) => `v-${hash(volumeId).slice(0, 16)}`;

/** The hosts a daemon's exports are for. */
const clientsOf = (d: Daemon) => [...new Set([...d.exports.values()].map((r) => r.client))].sort();

export class ExportDaemons {
  /** By key (directory name). */
  private readonly daemons = new Map<string, Daemon>();
  /** Changes to one daemon run one after another. */
  private readonly queue = new KeyedQueue();

  constructor(private readonly options: ExportDaemonsOptions) {
    const [first, last] = options.ports;
    if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || last > 65535 || first > last) {
      throw new RangeError(`export ports ${first}-${last}: a range of TCP ports, first to last`);
    }
    const socket = this.spec(volumeKey("x"), "x", [], first).socket;
    if (Buffer.byteLength(socket) > 107) throw new RangeError(`export state directory ${options.dir} is too long for a unix socket path (${socket})`);
  }

  /** A daemon's files; `address`: the one it was started on (default: the configured one). */
  private spec(key: string, name: string, clients: readonly string[], port: number, address = this.options.address): DaemonSpec {
    const dir = join(this.options.dir, key);
    return { name, clients, port, address, tlsDir: this.options.tlsDir, pidFile: join(dir, "pid"), socket: join(dir, "qmp.sock") };
  }

  /** Adopts the daemons a previous agent left running; removes the files of those that are gone. */
  async load(): Promise<void> {
    await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
    for (const key of await readdir(this.options.dir)) {
      const dir = join(this.options.dir, key);
      const text = await readIfExists(join(dir, "daemon.json"));
      const record = text === undefined ? undefined : (JSON.parse(text) as { volumeId?: string; client?: string; port: number; address?: string });
      const onlyClient = record?.volumeId === undefined ? record?.client : undefined;
      const name = record?.volumeId !== undefined ? `volume ${record.volumeId}` : record?.client !== undefined ? `client host ${record.client}` : key;
      const spec = record ? this.spec(key, name, onlyClient ? [onlyClient] : [], record.port, record.address) : undefined;
      const pid = spec ? await daemonPid(spec) : undefined;
      if (!record || !spec || pid === undefined || (record.volumeId === undefined && record.client === undefined)) {
        this.options.log.warn({ dir, daemon: name }, "export daemon is not running; its exports are gone");
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      const daemon: Daemon = { key, spec, dir, ...(onlyClient ? { onlyClient } : {}), exports: new Map() };
      const recorded = JSON.parse((await readIfExists(join(dir, "exports.json"))) ?? "[]") as (Omit<ExportRecord, "client"> & { client?: string })[];
      for (const r of recorded) daemon.exports.set(r.attachmentId, { ...r, client: r.client ?? onlyClient ?? "" });
      this.daemons.set(key, daemon);
      try {
        await this.reconcile(daemon);
      } catch (err) {
        // A daemon that does not answer its monitor serves nothing the agent can manage: it goes, and its exports with it.
        this.options.log.warn({ err, daemon: name, pid }, "export daemon does not answer; killing it, its exports are gone");
        killHard(pid);
        this.daemons.delete(key);
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      if (daemon.exports.size === 0) {
        await this.stop(daemon);
      } else if (onlyClient) {
        this.options.log.warn(
          { daemon: name, pid, port: spec.port, exports: [...daemon.exports.keys()] },
          "export daemon of the earlier per-client layout adopted as it is: it serves on, and stops when its last export ends; its volumes can be exported to no other host until then",
        );
      }
    }
  }

  /** Makes the daemon's exports those recorded (serves recorded exports it lost again, removes exports nobody recorded), and its authz list their clients. */
  private async reconcile(daemon: Daemon): Promise<void> {
    const context = { daemon: daemon.spec.name };
    await withQmp(daemon.spec.socket, this.options.timeoutMs, async (qmp) => {
      const running = new Set((await qmp.execute<{ id: string }[]>("query-block-exports")).map((e) => e.id));
      const known = new Set([...daemon.exports.values()].map((r) => exportId(r.attachmentId)));
      for (const id of running) {
        if (known.has(id)) continue;
        this.options.log.warn({ ...context, exportId: id }, "export daemon serves an export no record names; removing it");
        await this.delExport(qmp, id);
      }
      await this.dropUnusedNodes(qmp, daemon);
      for (const r of [...daemon.exports.values()]) {
        if (running.has(exportId(r.attachmentId))) continue;
        // An agent stopped between taking it down and adding it again (an extend), or before recording an unexport (which is sent again).
        this.options.log.warn({ ...context, attachmentId: r.attachmentId }, "a recorded export is not served; serving it again");
        try {
          await this.serve(qmp, r);
        } catch (err) {
          this.options.log.error({ ...context, err, attachmentId: r.attachmentId }, "a recorded export could not be served again; dropping its record");
          daemon.exports.delete(r.attachmentId);
        }
      }
      if (!daemon.onlyClient) await setAuthzClients(qmp, clientsOf(daemon));
    });
    await this.save(daemon);
  }

  private async save(daemon: Daemon): Promise<void> {
    await writeAtomic(join(daemon.dir, "exports.json"), JSON.stringify([...daemon.exports.values()], null, 2));
  }

  private info(daemon: Daemon, r: ExportRecord): ExportInfo {
    const { address, port } = daemon.spec;
    return { volumeId: r.volumeId, attachmentId: r.attachmentId, host: address, port, exportName: r.attachmentId, client: r.client };
  }

  /**
   * Forgets the daemons that died while the agent ran (killed, crashed):
   * their exports are gone, so their volumes are free to export again. Each
   * is logged.
   */
  async prune(): Promise<void> {
    for (const daemon of [...this.daemons.values()]) {
      await this.queue.run(daemon.key, async () => {
        if (this.daemons.get(daemon.key) !== daemon || (await daemonPid(daemon.spec)) !== undefined) return;
        this.options.log.warn({ daemon: daemon.spec.name, exports: [...daemon.exports.keys()] }, "export daemon died; its exports are gone");
        this.daemons.delete(daemon.key);
        await rm(daemon.dir, { recursive: true, force: true });
      });
    }
  }

  /** Every export, by export id. */
  list(): ExportInfo[] {
    return [...this.daemons.values()].flatMap((d) => [...d.exports.values()].map((r) => this.info(d, r))).sort((a, b) => a.attachmentId.localeCompare(b.attachmentId));
  }

  /** The export of an export id, if any. */
  find(attachmentId: string): ExportInfo | undefined {
    return this.list().find((e) => e.attachmentId === attachmentId);
  }

  /** The daemon that has a volume open: its own, or one of the earlier layout that serves it. */
  private daemonOf(volumeId: string): Daemon | undefined {
    const own = this.daemons.get(volumeKey(volumeId));
    if (own) return own;
    return [...this.daemons.values()].find((d) => d.onlyClient !== undefined && [...d.exports.values()].some((r) => r.volumeId === volumeId));
  }

  /** Exports volume file `path` under an export id to `client`, starting the volume's daemon if need be and admitting `client` to it. */
  async add(record: ExportRecord): Promise<ExportInfo> {
    const earlier = this.daemonOf(record.volumeId);
    if (earlier?.onlyClient !== undefined && earlier.onlyClient !== record.client) {
      throw volumeError(
        "VOLUME_IN_USE",
        `volume ${record.volumeId} is served to ${earlier.onlyClient} by an export daemon of the earlier per-client layout, which admits no other host; it can be exported to ${record.client} once its exports there end`,
      );
    }
    const key = earlier?.key ?? volumeKey(record.volumeId);
    return this.queue.run(key, async () => {
      const daemon = this.daemons.get(key) ?? (await this.start(key, record));
      const clients = [...new Set([...clientsOf(daemon), record.client])].sort();
      try {
        await withQmp(daemon.spec.socket, this.options.timeoutMs, async (qmp) => {
          if (!daemon.onlyClient) await setAuthzClients(qmp, clients);
          await this.serve(qmp, record);
        });
      } catch (err) {
        if (daemon.exports.size === 0) {
          await bestEffort(this.options.log, "stopping an export daemon whose first export failed", () => this.stop(daemon), { daemon: daemon.spec.name });
        } else if (!daemon.onlyClient) {
          await bestEffort(this.options.log, "restoring an export daemon's authz list", () => withQmp(daemon.spec.socket, this.options.timeoutMs, (qmp) => setAuthzClients(qmp, clientsOf(daemon))), {
            daemon: daemon.spec.name,
          });
        }
        throw err;
      }
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

  /** Ends an export; the daemon stops when it serves nothing more, else admits only the clients of the exports left. */
  async remove(attachmentId: string): Promise<void> {
    const daemon = [...this.daemons.values()].find((d) => d.exports.has(attachmentId));
    if (daemon === undefined) return;
    await this.queue.run(daemon.key, async () => {
      if (this.daemons.get(daemon.key) !== daemon || !daemon.exports.has(attachmentId)) return;
      await withQmp(daemon.spec.socket, this.options.timeoutMs, async (qmp) => {
        await this.delExport(qmp, exportId(attachmentId));
        daemon.exports.delete(attachmentId);
        await this.dropUnusedNodes(qmp, daemon);
        if (!daemon.onlyClient && daemon.exports.size > 0) await setAuthzClients(qmp, clientsOf(daemon));
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
    const found = this.daemonOf(volumeId);
    if (found === undefined) return undefined;
    return this.queue.run(found.key, async () => {
      const daemon = this.daemons.get(found.key);
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

  /**
   * Runs `fn` while the daemon that has `volumeId` open has let go of its
   * file: the volume's exports are removed (a hard delete: connected clients
   * are dropped) and its block node closed, which releases qemu's lock on
   * the file; then the node is opened again and the same exports added (the
   * same names and port; the records and the authz list are not touched).
   * They are added again also when `fn` failed (if that fails as well, it
   * is logged and `fn`'s error thrown: a retry, or the next start's
   * reconciliation, serves them). Resolves false, without running `fn`,
   * when no daemon has the volume.
   */
  async whileReleased(volumeId: string, fn: () => Promise<void>): Promise<boolean> {
    const found = this.daemonOf(volumeId);
    if (found === undefined) return false;
    return this.queue.run(found.key, async () => {
      const daemon = this.daemons.get(found.key);
      const mine = [...(daemon?.exports.values() ?? [])].filter((r) => r.volumeId === volumeId);
      if (!daemon || mine.length === 0) return false;
      const node = nodeName(volumeId);
      let failure: { err: unknown } | undefined;
      try {
        await withQmp(daemon.spec.socket, this.options.timeoutMs, async (qmp) => {
          for (const r of mine) await this.delExport(qmp, exportId(r.attachmentId));
          const nodes = await qmp.execute<{ "node-name": string }[]>("query-named-block-nodes", { flat: true });
          if (nodes.some((n) => n["node-name"] === node)) await qmp.execute("blockdev-del", { "node-name": node });
        });
        await fn();
      } catch (err) {
        failure = { err };
      }
      try {
        await withQmp(daemon.spec.socket, this.options.timeoutMs, async (qmp) => {
          for (const r of mine) await this.serve(qmp, r);
        });
      } catch (err) {
        if (failure === undefined) throw err;
        this.options.log.error({ err, daemon: daemon.spec.name, exports: mine.map((r) => r.attachmentId) }, "serving a volume's exports again after a failed change of its file failed too");
      }
      if (failure !== undefined) throw failure.err;
      return true;
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

  /** Starts a volume's daemon, admitting the first export's client, on the first free port of the range. */
  private async start(key: string, first: ExportRecord): Promise<Daemon> {
    const taken = new Set([...this.daemons.values()].map((d) => d.spec.port));
    const [low, high] = this.options.ports;
    const name = `volume ${first.volumeId}`;
    for (let port = low; port <= high; port++) {
      if (taken.has(port)) continue;
      const spec = this.spec(key, name, [first.client], port);
      const dir = join(this.options.dir, key);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeAtomic(join(dir, "daemon.json"), JSON.stringify({ volumeId: first.volumeId, port, address: spec.address }));
      const started = Date.now();
      try {
        const pid = await startDaemon(this.options.binary, spec, this.options.timeoutMs);
        this.options.log.info({ volumeId: first.volumeId, port, pid, ms: Date.now() - started }, "export daemon started");
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        if (err instanceof DriverError && err.code === "EXPORT_PORT_IN_USE") continue;
        throw err;
      }
      const daemon: Daemon = { key, spec, dir, exports: new Map() };
      this.daemons.set(key, daemon);
      return daemon;
    }
    throw new DriverError("EXPORT_PORTS_EXHAUSTED", `no free port in ${low}-${high} for the export daemon of ${name}`, { retryable: true });
  }

  private async stop(daemon: Daemon): Promise<void> {
    await stopDaemon(daemon.spec, this.options.timeoutMs, (msg, err) => this.options.log.warn({ err, daemon: daemon.spec.name }, msg));
    this.daemons.delete(daemon.key);
    await rm(daemon.dir, { recursive: true, force: true });
  }

  /** Stops every daemon (their exports end). */
  async stopAll(): Promise<void> {
    for (const daemon of [...this.daemons.values()]) {
      await this.queue.run(daemon.key, () => bestEffort(this.options.log, "stopping an export daemon", () => this.stop(daemon), { daemon: daemon.spec.name }));
    }
  }
}
