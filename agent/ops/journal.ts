/**
 * The op journal: an append-only, fsync'd JSONL file in the agent's state
 * directory that makes ops run at most once per op id across crashes.
 * `started` is written (and synced) before the driver is called, `finished`
 * with the outcome after. Concurrent appends share one write and one fsync
 * (group commit). The file is rewritten from memory at open — dropping a
 * torn last line — and whenever it grows past 4 × `maxOps` lines, keeping
 * the newest `maxOps` finished ops and every unfinished one.
 */
import { mkdir, open, readFile, rename, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "pino";
import type { PowerState, SnapshotInfo } from "../drivers/types.js";
import { settledOf } from "../settled.js";
import type { AgentOpKind, AgentVolumeOpKind } from "./agent-op.js";
import type { OpFailure, OpOutcome, VolumeResult } from "./outcome.js";

/** Written before the driver (or the volume backend) is called (not for abort ops, which never call it). */
export interface StartedEntry {
  readonly t: "started";
  readonly opId: string;
  /** The instance; "" for a volume op (but an export's or unexport's instance). */
  readonly serverId: string;
  /** The volume of a volume op. */
  readonly volumeId?: string;
  readonly kind: AgentOpKind | AgentVolumeOpKind;
  /** ISO time. */
  readonly time: string;
}

/** Written once the op's outcome is known. */
export interface FinishedEntry {
  readonly t: "finished";
  readonly opId: string;
  /** The instance; "" for a volume op (but an export's or unexport's instance). */
  readonly serverId: string;
  /** The volume of a volume op. */
  readonly volumeId?: string;
  /** Absent on success; the failure as the executor made it. */
  readonly error?: OpFailure;
  /** Power state after the op; absent if the driver could not say. */
  readonly powerState?: PowerState;
  /** The image data the op stored, if it took a snapshot. */
  readonly snapshot?: SnapshotInfo;
  /** How the op went, if worth saying (a soft reboot that fell back to hard, an abort, …). */
  readonly note?: string;
  /** What a volume op or an attach that succeeded reports of the volume. */
  readonly volume?: VolumeResult;
  /** ISO time the driver call started. */
  readonly startTime: string;
  /** ISO time it finished. */
  readonly finishTime: string;
}

/** The outcome journaled as `entry`, to report (again). */
export function outcomeOf(entry: FinishedEntry): OpOutcome {
  return {
    opId: entry.opId,
    serverId: entry.serverId,
    ...(entry.volumeId === undefined ? {} : { volumeId: entry.volumeId }),
    ...(entry.error ? { failure: entry.error } : {}),
    ...(entry.powerState === undefined ? {} : { powerState: entry.powerState }),
    ...(entry.snapshot ? { snapshot: entry.snapshot } : {}),
    ...(entry.note ? { note: entry.note } : {}),
    ...(entry.volume ? { volume: entry.volume } : {}),
    startTime: new Date(entry.startTime),
    finishTime: new Date(entry.finishTime),
  };
}

/** One line of the journal. */
export type JournalEntry = StartedEntry | FinishedEntry;

/** What the journal knows about one op. */
export interface OpRecord {
  started?: StartedEntry;
  finished?: FinishedEntry;
}

/** Options of {@link OpJournal.open}. */
export interface OpJournalOptions {
  /** Finished ops kept when the file is compacted (default 10,000). */
  readonly maxOps?: number;
  /** fsync after every write (default true; tests may turn it off). */
  readonly fsync?: boolean;
  /** Told about lines dropped at open (default: none). */
  readonly logger?: Logger;
}

/** See the module comment. */
export class OpJournal {
  private readonly ops = new Map<string, OpRecord>();
  private batch: JournalEntry[] = [];
  private scheduled: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private lines = 0;
  private fh: FileHandle | undefined;
  private closed = false;

  private constructor(
    /** Path of the journal file. */
    readonly path: string,
    private readonly maxOps: number,
    private readonly fsync: boolean,
  ) {}

  /** Loads (and compacts) the journal at `path`, creating it if needed. */
  static async open(path: string, options: OpJournalOptions = {}): Promise<OpJournal> {
    const journal = new OpJournal(path, options.maxOps ?? 10_000, options.fsync ?? true);
    await mkdir(dirname(path), { recursive: true });
    let text = "";
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      try {
        journal.apply(JSON.parse(line) as JournalEntry);
      } catch (err) {
        // A line torn by a crash during append: the op it described was not
        // acknowledged as started or finished, so dropping it is safe.
        options.logger?.warn({ err, path, line: line.slice(0, 200) }, "dropped a torn op journal line");
      }
    }
    await journal.compact();
    return journal;
  }

  /** What is known about `opId`. */
  get(opId: string): Readonly<OpRecord> | undefined {
    return this.ops.get(opId);
  }

  /** Number of ops held in memory. */
  get size(): number {
    return this.ops.size;
  }

  /** Appends an entry; resolves once it is on disk (and in memory). */
  append(entry: JournalEntry): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`journal ${this.path} is closed`));
    this.batch.push(entry);
    if (this.scheduled) return this.scheduled;
    const run = this.chain.then(() => this.writeBatch());
    this.scheduled = run;
    this.chain = settledOf(run);
    return run;
  }

  /** Waits for pending writes and closes the file. */
  async close(): Promise<void> {
    this.closed = true;
    await this.chain;
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }

  private async writeBatch(): Promise<void> {
    this.scheduled = undefined;
    const entries = this.batch;
    this.batch = [];
    const fh = this.fh;
    if (!fh) throw new Error(`journal ${this.path} is closed`);
    await fh.appendFile(entries.map((e) => `${JSON.stringify(e)}\n`).join(""));
    if (this.fsync) await fh.datasync();
    for (const e of entries) this.apply(e);
    this.lines += entries.length;
    if (this.lines > 4 * this.maxOps) await this.compact();
  }

  private apply(entry: JournalEntry): void {
    const record = this.ops.get(entry.opId) ?? {};
    if (entry.t === "started") record.started = entry;
    else if (entry.t === "finished") record.finished = entry;
    else return;
    this.ops.set(entry.opId, record);
  }

  /** Trims old finished ops and rewrites the file atomically from memory. */
  private async compact(): Promise<void> {
    let finished = 0;
    for (const r of this.ops.values()) if (r.finished) finished++;
    for (const [opId, r] of this.ops) {
      if (finished <= this.maxOps) break;
      if (!r.finished) continue;
      this.ops.delete(opId);
      finished--;
    }
    const lines: string[] = [];
    for (const r of this.ops.values()) {
      if (r.started) lines.push(`${JSON.stringify(r.started)}\n`);
      if (r.finished) lines.push(`${JSON.stringify(r.finished)}\n`);
    }
    const tmp = `${this.path}.tmp`;
    const out = await open(tmp, "w");
    try {
      await out.writeFile(lines.join(""));
      if (this.fsync) await out.sync();
    } finally {
      await out.close();
    }
    await rename(tmp, this.path);
    const old = this.fh;
    this.fh = await open(this.path, "a");
    this.lines = lines.length;
    await old?.close();
  }
}
