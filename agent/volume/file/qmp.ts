/**
 * A small QMP client (QEMU's machine protocol: JSON lines over a unix
 * socket): it reads the greeting, leaves negotiation mode
 * (`qmp_capabilities`), then runs commands one at a time, each with a
 * timeout. Events are kept (the last few hundred) so a caller can wait for
 * one. A command's error is a {@link QmpError} with QEMU's class and text.
 */
import { connect, type Socket } from "node:net";
import { DriverError } from "../../drivers/errors.js";

/** QEMU answered a command with an error. */
export class QmpError extends DriverError {
  /** QEMU's error class ("GenericError", "DeviceNotFound", …). */
  readonly qmpClass: string;

  constructor(command: string, qmpClass: string, desc: string) {
    super("VOLUME_COMMAND_FAILED", `QMP ${command}: ${desc}`, { retryable: false });
    this.name = "QmpError";
    this.qmpClass = qmpClass;
  }
}

interface Pending {
  readonly command: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** A QMP event as QEMU sends it. */
export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
}

/** One connection to a QMP monitor. */
export class QmpClient {
  private buffer = "";
  private pending: Pending | undefined;
  private greeted: ((ok: Error | undefined) => void) | undefined;
  private closedWith: Error | undefined;
  private readonly waiters: { match: (e: QmpEvent) => boolean; resolve: () => void }[] = [];
  /** Events seen since the connection opened (the last 256). */
  readonly events: QmpEvent[] = [];

  private constructor(
    private readonly socket: Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    socket.on("error", (err) => this.fail(new DriverError("VOLUME_COMMAND_FAILED", `QMP connection: ${err.message}`, { retryable: true, cause: err })));
    socket.on("close", () => this.fail(new DriverError("VOLUME_COMMAND_FAILED", "QMP connection closed", { retryable: true })));
  }

  /** Connects to the monitor at `path`, reads its greeting and negotiates; rejects after `timeoutMs`. */
  static async connect(path: string, timeoutMs = 5_000): Promise<QmpClient> {
    const socket = connect(path);
    const client = new QmpClient(socket, timeoutMs);
    const timer = setTimeout(() => socket.destroy(new Error(`no QMP greeting within ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        client.greeted = (err) => (err ? reject(err) : resolve());
      });
    } finally {
      clearTimeout(timer);
    }
    await client.execute("qmp_capabilities");
    return client;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line !== "") this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch (err) {
      this.socket.destroy(new Error(`QMP sent what is not JSON: ${line.slice(0, 200)} (${(err as Error).message})`));
      return;
    }
    if ("QMP" in msg) {
      this.greeted?.(undefined);
      this.greeted = undefined;
    } else if ("event" in msg) {
      const event = msg as unknown as QmpEvent;
      this.events.push(event);
      if (this.events.length > 256) this.events.shift();
      for (const w of this.waiters.filter((x) => x.match(event))) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    } else if (this.pending) {
      const p = this.pending;
      this.pending = undefined;
      clearTimeout(p.timer);
      const error = msg.error as { class?: string; desc?: string } | undefined;
      if (error) p.reject(new QmpError(p.command, error.class ?? "GenericError", error.desc ?? "failed"));
      else p.resolve(msg.return);
    }
  }

  private fail(err: Error): void {
    this.closedWith ??= err;
    this.greeted?.(err);
    this.greeted = undefined;
    if (this.pending) {
      clearTimeout(this.pending.timer);
      this.pending.reject(err);
      this.pending = undefined;
    }
  }

  /** Runs one command; resolves its `return`. Commands on one client run one after another. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedWith) throw this.closedWith;
    if (this.pending) throw new Error(`QMP ${command} sent while ${this.pending.command} is running`);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        const err = new DriverError("VOLUME_COMMAND_FAILED", `QMP ${command} got no answer within ${this.timeoutMs} ms`, { retryable: true });
        reject(err);
        this.socket.destroy(err);
      }, this.timeoutMs);
      this.pending = { command, resolve: resolve as (v: unknown) => void, reject, timer };
      this.socket.write(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`);
    });
  }

  /** Resolves when an event matching `match` arrives (or has arrived); rejects after `timeoutMs`. */
  async waitEvent(match: (e: QmpEvent) => boolean, timeoutMs = this.timeoutMs): Promise<void> {
    if (this.events.some(match)) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new DriverError("VOLUME_COMMAND_FAILED", `no awaited QMP event within ${timeoutMs} ms`, { retryable: true }));
      }, timeoutMs);
      const waiter = {
        match,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Closes the connection. */
  close(): void {
    this.closedWith ??= new Error("QMP connection closed by the client");
    this.socket.destroy();
  }
}

/** Connects, runs `fn` with the client, and closes it whatever happens. */
export async function withQmp<T>(path: string, timeoutMs: number, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect(path, timeoutMs);
  try {
    return await fn(qmp);
  } finally {
    qmp.close();
  }
}
