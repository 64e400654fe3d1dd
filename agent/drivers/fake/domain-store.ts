/**
 * Persistence of the fake hypervisor's domains: a JSON file written
 * atomically (tmp + fsync + rename), so a restarted agent finds the virtual
 * machines it had, as it would on a real hypervisor. Also the call log
 * `<statePath>.calls.jsonl` tests use to count driver calls.
 */
import { appendFile, mkdir, open, readFile, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { randomUUID } from "node:crypto";
import type { InstanceSpec, PowerState } from "../types.js";
import { isPowerState } from "../types.js";

/** One virtual machine of the fake hypervisor. */
export interface FakeDomain {
  /** What it was spawned from. */
  readonly instance: InstanceSpec;
  /** Its power state. */
  powerState: PowerState;
  /** How many times it was started (spawn, power on, reboot). */
  boots: number;
}

/** One mutating call, as recorded in the call log. */
export interface FakeCall {
  /** The op that made the call, if the caller said. */
  readonly opId?: string;
  /** Driver method. */
  readonly method: string;
  /** Instance it acted on. */
  readonly instanceId: string;
  /** ISO time of the call. */
  readonly time: string;
}

interface StateFile {
  readonly version: 1;
  readonly domains: Record<string, FakeDomain>;
}

/** Reads and writes the domain file; without a path, does nothing. */
export class DomainStore {
  private running: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;

  constructor(private readonly statePath: string | undefined) {}

  /** The call log's path, if any. */
  get callLogPath(): string | undefined {
    return this.statePath === undefined ? undefined : `${this.statePath}.calls.jsonl`;
  }

  /** Domains saved by a previous process (none if there is no file yet). */
  async load(): Promise<Map<string, FakeDomain>> {
    const domains = new Map<string, FakeDomain>();
    if (this.statePath === undefined) return domains;
    let text: string;
    try {
      text = await readFile(this.statePath, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return domains;
      throw err;
    }
    const file = JSON.parse(text) as StateFile;
    for (const [id, d] of Object.entries(file.domains ?? {})) {
      if (!isPowerState(d.powerState)) throw new Error(`${this.statePath}: bad power state for ${id}`);
      domains.set(id, { instance: d.instance, powerState: d.powerState, boots: d.boots ?? 1 });
    }
    return domains;
  }

  /**
   * Writes the domains as `snapshot()` returns them when the write starts.
   * Resolves once a write that started after this call is on disk; calls
   * made while a write is waiting share it.
   */
  save(snapshot: () => ReadonlyMap<string, FakeDomain>): Promise<void> {
    const path = this.statePath;
    if (path === undefined) return Promise.resolve();
    if (this.queued) return this.queued;
    const run = this.running.then(async () => {
      this.queued = undefined;
      const file: StateFile = { version: 1, domains: Object.fromEntries(snapshot()) };
      await writeAtomic(path, JSON.stringify(file));
    });
    this.queued = run;
    this.running = run.catch(() => undefined);
    return run;
  }

  /** Appends one call to the call log. */
  async logCall(call: FakeCall): Promise<void> {
    const path = this.callLogPath;
    if (path === undefined) return;
    await appendFile(path, `${JSON.stringify(call)}\n`);
  }

  /** Waits for writes in progress. */
  async flush(): Promise<void> {
    await this.running;
  }
}

/** Writes a file so that readers see the old or the new content, never a mix. */
export async function writeAtomic(path: string, data: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomUUID()}.tmp`;
  const fh = await open(tmp, "w");
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
