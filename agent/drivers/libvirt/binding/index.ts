/**
 * A thin N-API binding over the libvirt C API (libvirt >= 9.0).
 *
 * Every method that talks to libvirt returns a Promise: the call runs on a
 * libuv pool thread, never on the JS thread. A libvirt failure rejects with a
 * {@link LibvirtError} carrying libvirt's own error fields (`code`,
 * `domain`, `message`, …). See README.md beside this file for the threading
 * model and how to build the addon (`build/Release/novamesh_libvirt.node`).
 *
 * ```ts
 * const lv = loadLibvirt();
 * const conn = await lv.open("test:///default");
 * try {
 *   const dom = await conn.lookupDomainByName("test");
 *   const { state, reason } = await dom.getState();
 * } finally {
 *   await conn.close();
 * }
 * ```
 */
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as C from "./constants.js";

export * from "./constants.js";

/** Where the compiled addon is loaded from. */
export const ADDON_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), "build", "Release", "novamesh_libvirt.node");

// ---- errors -----------------------------------------------------------------

/** Fields of a libvirt error (libvirt's `virError`). */
export interface LibvirtErrorFields {
  /** `virErrorNumber`, e.g. 42 (VIR_ERR_NO_DOMAIN). */
  readonly code: number;
  /** Name of `code`, e.g. "VIR_ERR_NO_DOMAIN" ("VIR_ERR_UNKNOWN_<n>" for codes newer than the binding). */
  readonly codeName: string;
  /** `virErrorDomain`: the libvirt module that raised it, e.g. 12 (VIR_FROM_TEST). */
  readonly domain: number;
  /** Name of `domain`, e.g. "VIR_FROM_TEST". */
  readonly domainName: string;
  /** `virErrorLevel` (2: VIR_ERR_ERROR). */
  readonly level: number;
  /** Extra information libvirt attaches to some errors. */
  readonly str1?: string;
  readonly str2?: string;
  readonly str3?: string;
  readonly int1: number;
  readonly int2: number;
  /**
   * True when the binding raised it without calling libvirt: a call on a
   * closed connection (VIR_ERR_INVALID_CONN) or a freed domain
   * (VIR_ERR_INVALID_DOMAIN); `domain` is then VIR_FROM_NONE.
   */
  readonly fromBinding: boolean;
}

/** A libvirt call failed. The addon rejects with instances of this class. */
export class LibvirtError extends Error implements LibvirtErrorFields {
  readonly code!: number;
  readonly codeName!: string;
  readonly domain!: number;
  readonly domainName!: string;
  readonly level!: number;
  readonly str1?: string;
  readonly str2?: string;
  readonly str3?: string;
  readonly int1!: number;
  readonly int2!: number;
  readonly fromBinding!: boolean;

  constructor(message: string, fields: LibvirtErrorFields) {
    super(message);
    this.name = "LibvirtError";
    Object.assign(this, fields);
  }
}

/** Whether `e` is a {@link LibvirtError} (optionally with this code name or number). */
export function isLibvirtError(e: unknown, code?: string | number): e is LibvirtError {
  if (!(e instanceof LibvirtError)) return false;
  if (code === undefined) return true;
  return typeof code === "number" ? e.code === code : e.codeName === code;
}

// ---- value types ----------------------------------------------------------------

/** `virNodeGetInfo`. */
export interface NodeInfo {
  /** CPU model, e.g. "x86_64". */
  readonly model: string;
  /** Memory size in KiB. */
  readonly memoryKiB: number;
  /** Number of active CPUs. */
  readonly cpus: number;
  /** Expected CPU frequency in MHz (0 if unknown). */
  readonly mhz: number;
  /** NUMA cells (1 for uniform memory access). */
  readonly nodes: number;
  /** CPU sockets per NUMA cell. */
  readonly sockets: number;
  /** Cores per socket. */
  readonly cores: number;
  /** Threads per core. */
  readonly threads: number;
}

/** `virNodeGetMemoryStats`: field name ("total", "free", "buffers", "cached", …) → KiB. */
export type NodeMemoryStats = Readonly<Record<string, number>>;

/** `virDomainGetState`. */
export interface DomainStateInfo {
  /** A `virDomainState` (VIR_DOMAIN_RUNNING, …). */
  readonly state: number;
  /** The reason, from the enum that goes with `state` (`virDomainShutoffReason` for VIR_DOMAIN_SHUTOFF, …). */
  readonly reason: number;
}

/** `virDomainGetInfo`. */
export interface DomainInfo {
  readonly state: number;
  readonly maxMemKiB: number;
  readonly memoryKiB: number;
  readonly nrVirtCpu: number;
  /** CPU time used, ns (a double: precise up to 2^53 ns, about 104 days). */
  readonly cpuTimeNs: number;
}

/** `virDomainGetJobInfo` (byte counts as doubles). */
export interface DomainJobInfo {
  /** A `virDomainJobType` (VIR_DOMAIN_JOB_NONE, VIR_DOMAIN_JOB_UNBOUNDED, …). */
  readonly type: number;
  readonly timeElapsedMs: number;
  readonly timeRemainingMs: number;
  readonly dataTotal: number;
  readonly dataProcessed: number;
  readonly dataRemaining: number;
  readonly memTotal: number;
  readonly memProcessed: number;
  readonly memRemaining: number;
  readonly fileTotal: number;
  readonly fileProcessed: number;
  readonly fileRemaining: number;
}

/**
 * `virDomainGetJobStats`: `stats` is keyed by libvirt's field names
 * (VIR_DOMAIN_JOB_DATA_TOTAL = "data_total", VIR_DOMAIN_JOB_MEMORY_PROCESSED,
 * …); integers come as doubles.
 */
export interface DomainJobStats {
  readonly type: number;
  readonly stats: Readonly<Record<string, number | string | boolean>>;
}

/** Typed parameters of {@link LibvirtDomain.migrateToURI3} (each maps to a VIR_MIGRATE_PARAM_*). */
export interface MigrateParams {
  /** VIR_MIGRATE_PARAM_URI: the URI the hypervisors use for the data (e.g. "tcp://host:49152"). */
  readonly migrateUri?: string;
  /** VIR_MIGRATE_PARAM_DEST_NAME. */
  readonly destName?: string;
  /** VIR_MIGRATE_PARAM_DEST_XML. */
  readonly destXml?: string;
  /** VIR_MIGRATE_PARAM_PERSIST_XML. */
  readonly persistXml?: string;
  /** VIR_MIGRATE_PARAM_LISTEN_ADDRESS. */
  readonly listenAddress?: string;
  /** VIR_MIGRATE_PARAM_TLS_DESTINATION. */
  readonly tlsDestination?: string;
  /**
   * VIR_MIGRATE_PARAM_MIGRATE_DISKS, once per element: the disks (target
   * names, "vda") to copy with VIR_MIGRATE_NON_SHARED_*; the others are not
   * copied. An empty list is no list (libvirt then copies its default set).
   */
  readonly migrateDisks?: readonly string[];
  /** VIR_MIGRATE_PARAM_BANDWIDTH, MiB/s. */
  readonly bandwidthMiBs?: number;
  /** VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY, bytes/s. */
  readonly bandwidthPostcopyBytes?: number;
  /** VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS (with VIR_MIGRATE_PARALLEL). */
  readonly parallelConnections?: number;
  /** VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL, percent. */
  readonly autoConvergeInitial?: number;
  /** VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT, percent. */
  readonly autoConvergeIncrement?: number;
}

/** A lifecycle event (VIR_DOMAIN_EVENT_ID_LIFECYCLE). */
export interface LifecycleEvent {
  readonly domainName: string;
  readonly domainUUID: string;
  /** A `virDomainEventType` (VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STOPPED, …). */
  readonly event: number;
  /** Its detail, from the matching `virDomainEvent*DetailType` enum. */
  readonly detail: number;
}

// ---- objects ---------------------------------------------------------------------

/**
 * A connection (`virConnectPtr`). Close it: `close()` deregisters its
 * callbacks, frees its domains and releases libvirt's connection. A
 * connection with a lifecycle listener or a close callback keeps the Node
 * process alive until it is closed (or the listener removed).
 *
 * After `close()` every call (also on its domains) rejects with
 * VIR_ERR_INVALID_CONN (`fromBinding: true`).
 */
export interface LibvirtConnection {
  /**
   * `virConnectClose`, after deregistering callbacks and freeing this
   * connection's domain objects. Resolves to libvirt's remaining reference
   * count (0 once closed; > 0 while calls are still in flight); a second
   * close resolves 0 and does nothing.
   */
  close(): Promise<number>;
  /** Whether close() was called (synchronous, no libvirt call). */
  isClosed(): boolean;
  /** `virConnectIsAlive`. */
  isAlive(): Promise<boolean>;
  /** `virConnectGetURI`. */
  getURI(): Promise<string>;
  /** `virConnectGetHostname`. */
  getHostname(): Promise<string>;
  /** `virNodeGetInfo`. */
  getNodeInfo(): Promise<NodeInfo>;
  /**
   * `virNodeGetMemoryStats` for one NUMA cell or all (default
   * VIR_NODE_MEMORY_STATS_ALL_CELLS). The test driver does not support it
   * (VIR_ERR_NO_SUPPORT).
   */
  getNodeMemoryStats(cellNum?: number, flags?: number): Promise<NodeMemoryStats>;
  /** `virConnectGetCapabilities`: capabilities XML. */
  getCapabilities(): Promise<string>;
  /** `virConnectGetLibVersion`: major * 1,000,000 + minor * 1000 + release. */
  getLibVersion(): Promise<number>;
  /** `virConnectGetVersion`: the hypervisor's version, same encoding. */
  getVersion(): Promise<number>;
  /** `virConnectListAllDomains` (flags: VIR_CONNECT_LIST_DOMAINS_*). */
  listAllDomains(flags?: number): Promise<LibvirtDomain[]>;
  /** `virDomainLookupByName`; VIR_ERR_NO_DOMAIN when there is none. */
  lookupDomainByName(name: string): Promise<LibvirtDomain>;
  /** `virDomainLookupByUUIDString`; VIR_ERR_NO_DOMAIN when there is none. */
  lookupDomainByUUIDString(uuid: string): Promise<LibvirtDomain>;
  /** `virDomainDefineXMLFlags` (flags: VIR_DOMAIN_DEFINE_VALIDATE). */
  defineXML(xml: string, flags?: number): Promise<LibvirtDomain>;
  /** `virDomainCreateXML`: a transient domain, started (flags: VIR_DOMAIN_START_*). */
  createXML(xml: string, flags?: number): Promise<LibvirtDomain>;
  /**
   * `virConnectSetKeepAlive`: resolves 0, or 1 when the other side does not
   * support keepalive. Local drivers (test) reject with VIR_ERR_NO_SUPPORT.
   */
  setKeepAlive(intervalSeconds: number, count: number): Promise<number>;
  /**
   * `virConnectRegisterCloseCallback`: `callback(reason)` (a
   * `virConnectCloseReason`) when libvirt closes the connection (remote
   * drivers only; others accept it and never call it). One per connection.
   */
  registerCloseCallback(callback: (reason: number) => void): Promise<void>;
  /** `virConnectUnregisterCloseCallback`; resolves whether one was registered. */
  unregisterCloseCallback(): Promise<boolean>;
  /**
   * `virConnectDomainEventRegisterAny(VIR_DOMAIN_EVENT_ID_LIFECYCLE)` for all
   * domains; resolves the callback id for {@link deregisterEvent}. The
   * listener runs on the JS thread; an exception it throws is an uncaught
   * exception.
   */
  registerLifecycleEvents(callback: (event: LifecycleEvent) => void): Promise<number>;
  /** `virConnectDomainEventDeregisterAny`; resolves whether the id was registered. */
  deregisterEvent(callbackId: number): Promise<boolean>;
}

/**
 * A domain (`virDomainPtr`). Each lookup makes a new object; it is freed by
 * `free()`, by its connection's `close()`, or when garbage collected.
 * After `free()` calls reject with VIR_ERR_INVALID_DOMAIN (`fromBinding`).
 */
export interface LibvirtDomain {
  /** `virDomainFree` now (synchronous; only drops a reference). */
  free(): void;
  getName(): Promise<string>;
  getUUIDString(): Promise<string>;
  /** `virDomainGetID`; -1 when the domain is not running. */
  getID(): Promise<number>;
  /** `virDomainGetState`: state and reason numbers. */
  getState(): Promise<DomainStateInfo>;
  getInfo(): Promise<DomainInfo>;
  /** flags: VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE | … */
  getXMLDesc(flags?: number): Promise<string>;
  isActive(): Promise<boolean>;
  isPersistent(): Promise<boolean>;
  /** `virDomainCreate`: start a defined domain (restores a managed save image if there is one). */
  create(): Promise<void>;
  /** flags: VIR_DOMAIN_START_PAUSED | VIR_DOMAIN_START_FORCE_BOOT | … */
  createWithFlags(flags: number): Promise<void>;
  /** Asks the guest to shut down (returns before it has). */
  shutdown(): Promise<void>;
  /** flags: VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN | VIR_DOMAIN_SHUTDOWN_GUEST_AGENT | … */
  shutdownFlags(flags: number): Promise<void>;
  /** Hard power off. */
  destroy(): Promise<void>;
  /** flags: VIR_DOMAIN_DESTROY_GRACEFUL. */
  destroyFlags(flags: number): Promise<void>;
  /** flags: VIR_DOMAIN_REBOOT_* (0: hypervisor's choice). */
  reboot(flags?: number): Promise<void>;
  /** `virDomainReset`: hard reset, no guest involvement. */
  reset(): Promise<void>;
  /** `virDomainSuspend` (pause: vCPUs stop, memory stays). */
  suspend(): Promise<void>;
  /** `virDomainResume` (unpause). */
  resume(): Promise<void>;
  /** flags: VIR_DOMAIN_SAVE_BYPASS_CACHE | VIR_DOMAIN_SAVE_RUNNING | VIR_DOMAIN_SAVE_PAUSED. */
  managedSave(flags?: number): Promise<void>;
  hasManagedSaveImage(): Promise<boolean>;
  managedSaveRemove(): Promise<void>;
  undefine(): Promise<void>;
  /** flags: VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_NVRAM | … */
  undefineFlags(flags: number): Promise<void>;
  /**
   * `virDomainAttachDeviceFlags`: adds the device of `xml` (an `<interface>`,
   * `<disk>`, …); flags VIR_DOMAIN_AFFECT_LIVE (the running domain) |
   * VIR_DOMAIN_AFFECT_CONFIG (its persistent definition), or
   * VIR_DOMAIN_AFFECT_CURRENT (0: whichever the domain's state means).
   */
  attachDeviceFlags(xml: string, flags?: number): Promise<void>;
  /**
   * `virDomainDetachDeviceFlags`: removes the device `xml` names (an
   * interface by its MAC, …), flags as {@link attachDeviceFlags}. For a live
   * domain it may resolve before the guest has released the device (qemu
   * waits a few seconds, then leaves the unplug pending): read the live XML
   * to know when it is gone.
   */
  detachDeviceFlags(xml: string, flags?: number): Promise<void>;
  /**
   * `virDomainBlockResize`: changes the size the running domain's `disk`
   * (its target, "vdb", or source) has, to `size` KiB, or bytes with flag
   * VIR_DOMAIN_BLOCK_RESIZE_BYTES; the guest is told of the new capacity.
   * `size`: a whole number up to 2^53-1 (else a TypeError).
   */
  blockResize(disk: string, size: number, flags?: number): Promise<void>;
  /**
   * `virDomainQemuMonitorCommand` (libvirt-qemu): a command straight to the
   * domain's qemu monitor (QMP, or HMP with
   * VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP); resolves its reply. libvirt
   * records the domain as tainted ("custom-monitor").
   */
  qemuMonitorCommand(cmd: string, flags?: number): Promise<string>;
  /** `virDomainSnapshotCreateXML`; resolves the snapshot's name. */
  snapshotCreateXML(xml: string, flags?: number): Promise<string>;
  /**
   * `virDomainMigrateToURI3`. `dconnuri` is the destination libvirt URI
   * (required with VIR_MIGRATE_PEER2PEER, null otherwise); flags:
   * VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST |
   * VIR_MIGRATE_UNDEFINE_SOURCE | …. Occupies a pool thread for the whole
   * migration: follow it with getJobStats() and abortJob().
   */
  migrateToURI3(dconnuri: string | null, params: MigrateParams, flags: number): Promise<void>;
  /** `virDomainAbortJob` (or `virDomainAbortJobFlags` when flags are given). */
  abortJob(flags?: number): Promise<void>;
  getJobInfo(): Promise<DomainJobInfo>;
  /** flags: VIR_DOMAIN_JOB_STATS_COMPLETED | VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED. */
  getJobStats(flags?: number): Promise<DomainJobStats>;
}

/** What the addon exports. */
export interface LibvirtBinding {
  /**
   * `virConnectOpenAuth(uri, NULL, flags)`: flags VIR_CONNECT_RO for a
   * read-only connection. No interactive authentication.
   */
  open(uri: string, flags?: number): Promise<LibvirtConnection>;
  /** `virGetVersion`: the library's version (major * 1,000,000 + minor * 1000 + release). */
  getVersion(): Promise<number>;
  /**
   * Stops the libvirt event loop thread (blocks until it has, at most 5 s;
   * returns false if it did not). Needed only to stop it early: it never
   * keeps Node alive and stops itself when the environment exits. Close
   * connections first; opening a connection or registering events starts
   * it again.
   */
  shutdownEventLoop(): boolean;
  /** Whether the event loop thread is running. */
  eventLoopRunning(): boolean;
  /** Every constant of constants.ts, as the C headers the addon was built with define it. */
  readonly constants: Readonly<Record<string, number | string>>;
}

/** Options of {@link LibvirtBinding.open} as named flags. */
export function openFlags(options: { readonly readOnly?: boolean } = {}): number {
  return options.readOnly ? C.VIR_CONNECT_RO : 0;
}

interface NativeAddon extends LibvirtBinding {
  setErrorClass(cls: typeof LibvirtError): void;
}

let loaded: LibvirtBinding | undefined;

/** Loads the addon (once); throws an Error saying how to build it when it is missing. */
export function loadLibvirt(): LibvirtBinding {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  let native: NativeAddon;
  try {
    native = require(ADDON_PATH) as NativeAddon;
  } catch (err) {
    throw new Error(
      `the libvirt binding is not built (${ADDON_PATH}): run scripts/setup-libvirt.sh and npm run build:libvirt`,
      { cause: err },
    );
  }
  native.setErrorClass(LibvirtError);
  loaded = native;
  return native;
}

/** Like {@link loadLibvirt}, but returns the Error instead of throwing it. */
export function tryLoadLibvirt(): LibvirtBinding | Error {
  try {
    return loadLibvirt();
  } catch (err) {
    return err as Error;
  }
}
