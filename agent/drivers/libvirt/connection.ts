/**
 * The libvirt driver's connection: opened on demand, re-opened after
 * libvirtd went away (remote connections notice that by keepalive), and the
 * source of the driver's state change events (lifecycle events of
 * novamesh's domains, a reconnect).
 */
import type { Logger } from "pino";
import { detached } from "../../../controller/tracing.js";
import { DriverError } from "../errors.js";
import { isLibvirtError, loadLibvirt, type LibvirtBinding, type LibvirtConnection } from "./binding/index.js";
import { serverIdOfDomain } from "./domain-xml.js";
import { bestEffort, fromLibvirt } from "./failures.js";

/** One libvirt connection, kept open (see the module comment). */
export class ManagedConnection {
  private lv: LibvirtBinding | undefined;
  private conn: LibvirtConnection | undefined;
  private connecting: Promise<LibvirtConnection> | undefined;
  private closed = false;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly uri: string,
    private readonly log: Logger,
  ) {}

  /** The open connection; opens (or re-opens, after libvirtd went away) on demand. */
  async open(): Promise<LibvirtConnection> {
    if (this.closed) throw new DriverError("CLOSED", "the libvirt driver is closed");
    if (this.conn && !this.conn.isClosed()) return this.conn;
    // Opened outside the op that asks first: its callbacks and reconnects outlive that op.
    this.connecting ??= detached(() => this.connect()).finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(): Promise<LibvirtConnection> {
    this.lv ??= loadLibvirt();
    let conn: LibvirtConnection;
    try {
      conn = await this.lv.open(this.uri);
    } catch (err) {
      throw new DriverError("HYPERVISOR_UNAVAILABLE", `cannot connect to libvirt at ${this.uri}: ${(err as Error).message}`, {
        retryable: true,
        cause: err,
      });
    }
    const context = { uri: this.uri };
    // Remote connections: notice a dead libvirtd within ~15 s and reconnect at the next call.
    // Local drivers (test:///) have no keepalive; that is no failure.
    await bestEffort(
      this.log,
      "turning on keepalive",
      () =>
        conn.setKeepAlive(5, 3).catch((err: unknown) => {
          if (!isLibvirtError(err, "VIR_ERR_NO_SUPPORT")) throw err;
        }),
      context,
    );
    await bestEffort(this.log, "registering for the connection's close", () => conn.registerCloseCallback(() => this.lost(conn)), context);
    // Lifecycle events of novamesh's domains: what report() says has changed.
    await bestEffort(
      this.log,
      "registering for domain lifecycle events",
      () =>
        conn.registerLifecycleEvents((e) => {
          if (serverIdOfDomain(e.domainName) !== undefined) this.changed();
        }),
      context,
    );
    this.conn = conn;
    return conn;
  }

  /** libvirt closed `conn` (libvirtd went away): drop it, and reconnect soon, so events flow again and the next report sees the new state. */
  private lost(conn: LibvirtConnection): void {
    this.drop(conn);
    if (this.closed || this.listeners.size === 0) return;
    const reconnect = async () => {
      await this.open();
      this.changed();
    };
    setTimeout(() => void bestEffort(this.log, "reconnecting to libvirt", reconnect, { uri: this.uri }), 1000).unref();
  }

  /** Forgets `conn` (if it is the current one) and closes it. */
  private drop(conn: LibvirtConnection): void {
    if (this.conn === conn) this.conn = undefined;
    void bestEffort(this.log, "closing a broken libvirt connection", () => conn.close(), { uri: this.uri });
  }

  /** Runs a libvirt call; a broken connection is dropped so the next call reconnects. */
  async call<T>(what: string, fn: (conn: LibvirtConnection) => Promise<T>): Promise<T> {
    const conn = await this.open();
    try {
      return await fn(conn);
    } catch (err) {
      const e = fromLibvirt(err, what);
      if (e.code === "HYPERVISOR_UNAVAILABLE" && this.conn === conn) this.drop(conn);
      throw e;
    }
  }

  /** Hypervisor events (lifecycle of novamesh's domains; a reconnect) reach `listener`. */
  onStateChange(listener: () => void): () => void {
    this.listeners.add(listener);
    // Open the connection now (if init has not), so events flow without a call.
    if (!this.closed) void bestEffort(this.log, "connecting to libvirt for its events", () => this.open(), { uri: this.uri });
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) {
      // A listener's failure is its own; the others still hear of the change.
      void bestEffort(this.log, "telling a listener of a hypervisor state change", listener);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.listeners.clear();
    this.closed = true;
    const conn = this.conn;
    this.conn = undefined;
    if (conn) await bestEffort(this.log, "closing the libvirt connection", () => conn.close(), { uri: this.uri });
  }
}
