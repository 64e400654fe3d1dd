/**
 * Persistence of the fake hypervisor's domains: a JSON file written
 * atomically (tmp + fsync + rename), so a restarted agent finds the virtual
 * machines it had, as it would on a real hypervisor. Also the call log
 * `<statePath>.calls.jsonl` tests use to count driver calls, and the event
 * file `<statePath>.events.jsonl` through which the outside world changes
 * domains behind the agent's back (see {@link setDomainPowerState}).
 */
import { appendFile, mkdir, open, readFile, rename, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { randomUUID } from "node:crypto";
import { settledOf } from "../../settled.js";
import { configDriveFiles } from "../config-drive.js";
import type { AttachedVolume, GuestSpec, InstanceSpec, PowerState } from "../types.js";
import { isPowerState } from "../types.js";

/** One virtual machine of the fake hypervisor. */
export interface FakeDomain {
  /** What it was spawned (or rebuilt, or migrated) from. */
  readonly instance: InstanceSpec;
  /** Its power state. */
  powerState: PowerState;
  /** How many times it was started (spawn, power on, reboot, rebuild). */
  boots: number;
  /**
   * Source side of a cold migration: its disk was handed to this host by
   * `migrateDiskAndPowerOff`; kept shut off until confirm or revert.
   */
  migratedTo?: string;
  /** Target side of a live migration: made by `preLiveMigration`, not yet finished. */
  incoming?: FakeIncoming;
  /** Volumes attached (`attachVolume`), in the order they were. */
  volumes?: AttachedVolume[];
  /** Paused by `holdVolume` for this attachment until `extendVolume` of it. */
  volumeHold?: string;
}

/** An incoming live migration. */
export interface FakeIncoming {
  /** Host it comes from. */
  readonly sourceHost: string;
  /** The source said the instance is paused: it lands PAUSED. */
  readonly paused: boolean;
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
  /** The process that made it (tells an agent from its restarted self). */
  readonly pid: number;
}

/**
 * Something that happened to a domain outside the agent, appended to
 * `<statePath>.events.jsonl` by another process (a test, or the source
 * host's fake driver at the end of a live migration).
 */
export interface FakeEvent {
  /** The domain. Events for unknown domains are ignored. */
  readonly serverId: string;
  /** The guest changed power state on its own (shut itself down, crashed, …). */
  readonly powerState?: PowerState;
  /** An incoming live migration's source says whether the instance was paused. */
  readonly sourcePaused?: boolean;
  /** An incoming live migration's source says where its volumes open on this host. */
  readonly volumes?: readonly AttachedVolume[];
  /** ISO time the event was written. */
  readonly time: string;
}

/** Everything the store keeps. */
export interface FakeState {
  /** Domains by server id. */
  readonly domains: Map<string, FakeDomain>;
  /** Old copies of instances resized in place, set aside until confirm or revert. */
  readonly stashes: Map<string, FakeDomain>;
  /** Bytes of the event file already applied. */
  eventsOffset: number;
}

/** A domain as the state file holds it: its guest's user data in base64, and its config drive's files. */
type DomainOnDisk = Omit<FakeDomain, "instance"> & {
  readonly instance: Omit<InstanceSpec, "guest"> & { readonly guest?: Omit<GuestSpec, "userData"> & { readonly userData: string } };
  /** What the guest's config drive holds, by path, in base64 (made from the instance as the libvirt driver makes it). */
  readonly configDrive?: Record<string, string>;
};

interface StateFile {
  readonly version: 1;
  readonly domains: Record<string, DomainOnDisk>;
  readonly stashes?: Record<string, DomainOnDisk>;
  readonly eventsOffset?: number;
}

function toDisk(d: FakeDomain): DomainOnDisk {
  const { guest, ...instance } = d.instance;
  if (!guest) return { ...d, instance };
  const drive = guest.configDrive ? configDriveFiles(d.instance, guest) : undefined;
  return {
    ...d,
    instance: { ...instance, guest: { ...guest, userData: Buffer.from(guest.userData).toString("base64") } },
    ...(drive ? { configDrive: Object.fromEntries([...drive].map(([path, data]) => [path, data.toString("base64")])) } : {}),
  };
}

function fromDisk(d: DomainOnDisk): FakeDomain {
  const { configDrive: _drive, ...rest } = d;
  const { guest, ...instance } = d.instance;
  return { ...rest, instance: guest ? { ...instance, guest: { ...guest, userData: new Uint8Array(Buffer.from(guest.userData, "base64")) } } : instance };
}

/** The config drive files of a domain in a fake driver's state file, by path; none: it has no config drive (or is not there). */
export async function configDriveOf(statePath: string, serverId: string): Promise<Map<string, Buffer> | undefined> {
  const file = JSON.parse(await readFile(statePath, "utf8")) as StateFile;
  const drive = file.domains[serverId]?.configDrive;
  return drive ? new Map(Object.entries(drive).map(([p, b64]) => [p, Buffer.from(b64, "base64")])) : undefined;
}

/** The event file of a state file. */
export function eventsPathOf(statePath: string): string {
  return `${statePath}.events.jsonl`;
}

/**
 * Sets the power state of a domain of the fake driver whose state file is
 * `statePath`, as if the guest had done it (shut itself down, crashed, …):
 * for tests, from any process, while the agent runs. Race-safe: the event is
 * appended to `<statePath>.events.jsonl`, and the driver applies every event
 * exactly once (its offset in that file is saved with the domains), at the
 * start of its next call — the agent's next report or op. Events for a
 * domain that does not exist then are ignored.
 */
export async function setDomainPowerState(statePath: string, serverId: string, powerState: PowerState): Promise<void> {
  if (!isPowerState(powerState)) throw new TypeError(`not a power state: ${String(powerState)}`);
  await mkdir(dirname(statePath), { recursive: true });
  await appendEvent(statePath, { serverId, powerState, time: new Date().toISOString() });
}

/**
 * Appends one event to the event file of `statePath`, whose directory must
 * exist (one O_APPEND write, so appends never interleave).
 */
export async function appendEvent(statePath: string, event: FakeEvent): Promise<void> {
  await appendFile(eventsPathOf(statePath), `${JSON.stringify(event)}\n`);
}

function checkDomain(path: string, id: string, d: FakeDomain): FakeDomain {
  if (!isPowerState(d.powerState)) throw new Error(`${path}: bad power state for ${id}`);
  return {
    instance: d.instance,
    powerState: d.powerState,
    boots: d.boots ?? 1,
    ...(d.migratedTo === undefined ? {} : { migratedTo: d.migratedTo }),
    ...(d.incoming === undefined ? {} : { incoming: { sourceHost: d.incoming.sourceHost, paused: d.incoming.paused } }),
    ...(d.volumes === undefined ? {} : { volumes: d.volumes.map((v) => ({ ...v, connection: { ...v.connection } })) }),
  };
}

/** The event a line of the event file holds; undefined for a blank line or one that is not an event (skipped). */
function eventOf(line: string): FakeEvent | undefined {
  if (line.trim() === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  const e = value as FakeEvent | null;
  return typeof e === "object" && e !== null && typeof e.serverId === "string" ? e : undefined;
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

  /** The event file's path, if any. */
  get eventsPath(): string | undefined {
    return this.statePath === undefined ? undefined : eventsPathOf(this.statePath);
  }

  /** State saved by a previous process (empty if there is no file yet). */
  async load(): Promise<FakeState> {
    const state: FakeState = { domains: new Map(), stashes: new Map(), eventsOffset: 0 };
    if (this.statePath === undefined) return state;
    let text: string;
    try {
      text = await readFile(this.statePath, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return state;
      throw err;
    }
    const file = JSON.parse(text) as StateFile;
    for (const [id, d] of Object.entries(file.domains ?? {})) state.domains.set(id, checkDomain(this.statePath, id, fromDisk(d)));
    for (const [id, d] of Object.entries(file.stashes ?? {})) state.stashes.set(id, checkDomain(this.statePath, id, fromDisk(d)));
    state.eventsOffset = file.eventsOffset ?? 0;
    return state;
  }

  /**
   * Events appended since byte `offset` (complete lines only; unparsable
   * lines are skipped) and the offset after them. A file shorter than
   * `offset` was replaced: it is read from the start.
   */
  async readEvents(offset: number): Promise<{ events: FakeEvent[]; offset: number }> {
    const path = this.eventsPath;
    if (path === undefined) return { events: [], offset };
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { events: [], offset: 0 };
      throw err;
    }
    if (size < offset) offset = 0;
    if (size === offset) return { events: [], offset };
    const fh = await open(path, "r");
    let chunk: Buffer;
    try {
      chunk = Buffer.alloc(size - offset);
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, offset);
      chunk = chunk.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
    const end = chunk.lastIndexOf(0x0a) + 1; // a line still being written waits for the next call
    const events: FakeEvent[] = [];
    for (const line of chunk.subarray(0, end).toString("utf8").split("\n")) {
      const e = eventOf(line);
      if (e) events.push(e);
    }
    return { events, offset: offset + end };
  }

  /**
   * Writes the state as `snapshot()` returns it when the write starts.
   * Resolves once a write that started after this call is on disk; calls
   * made while a write is waiting share it.
   */
  save(snapshot: () => FakeState): Promise<void> {
    const path = this.statePath;
    if (path === undefined) return Promise.resolve();
    if (this.queued) return this.queued;
    const run = this.running.then(async () => {
      this.queued = undefined;
      const state = snapshot();
      const file: StateFile = {
        version: 1,
        domains: Object.fromEntries([...state.domains].map(([id, d]) => [id, toDisk(d)])),
        stashes: Object.fromEntries([...state.stashes].map(([id, d]) => [id, toDisk(d)])),
        eventsOffset: state.eventsOffset,
      };
      await writeAtomic(path, JSON.stringify(file));
    });
    this.queued = run;
    this.running = settledOf(run);
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
