/**
 * The fake driver's migrations. Cold (resize/migrate): the source hands the
 * disk over and keeps a stopped copy until confirm or revert. Live: the
 * target prepares an incoming domain, the source copies memory in steps and
 * tells the target whether the instance was paused (so it lands paused)
 * and its volumes, each opening the export made for the target,
 * directly if the target driver lives in this process, else through the
 * target's event file, whose path its migration URI carries
 * (`fake://<host>/<absolute statePath>`).
 */
import type {
  CallOptions,
  FinishMigrationOptions,
  FinishRevertMigrationOptions,
  InstanceOptions,
  LiveMigrateOptions,
  MigrateDiskOptions,
  MigratingVolume,
  PostLiveMigrationOptions,
  PreLiveMigrationOptions,
} from "../driver.js";
import { DriverError } from "../errors.js";
import { ACTIVE_POWER_STATES, type AttachedVolume } from "../types.js";
import { appendEvent, type FakeDomain } from "./domain-store.js";
import { FakeHost, initialVolumes, invalidState, rootVolumeOf, sameInstance } from "./fake-host.js";
import { wait } from "./faults.js";

/** Steps of a fake live migration; each waits the call's delay and reports progress. */
export const LIVE_MIGRATION_STEPS = 4;

/** The state file a fake migration URI names, if it names one. */
function statePathOfUri(uri: string): string | undefined {
  if (!URL.canParse(uri)) return undefined;
  const url = new URL(uri);
  if (url.protocol !== "fake:" || url.pathname === "" || url.pathname === "/") return undefined;
  return decodeURIComponent(url.pathname);
}

/**
 * The instance's volumes as the target opens them: each with the export of
 * its entry in `volumes` (device and size kept). A volume without one is
 * refused: a volume is never copied.
 */
function migratedVolumes(d: FakeDomain, volumes: readonly MigratingVolume[], targetHost: string): AttachedVolume[] {
  return (d.volumes ?? []).map((v) => {
    const to = volumes.find((m) => m.attachmentId === v.attachmentId);
    if (!to) {
      throw new DriverError("INVALID_ARGUMENT", `cannot live migrate instance ${d.instance.id}: volume attachment ${v.attachmentId} (${v.device}) has no export for ${targetHost}`, {
        retryable: false,
      });
    }
    return { ...v, connection: { host: to.export.host, port: to.export.port, exportName: to.export.exportName, tls: true } };
  });
}

/** Tells the live migration target whether the instance was paused and where it opens the volumes (see the module comment). */
async function handOver(host: FakeHost, targetUri: string, instanceId: string, paused: boolean, volumes: AttachedVolume[]): Promise<void> {
  const peer = FakeHost.peerAt(targetUri);
  if (peer && peer !== host) {
    await peer.receiveSourceState(instanceId, paused, volumes);
    return;
  }
  const path = statePathOfUri(targetUri);
  if (path === undefined) return;
  try {
    await appendEvent(path, { serverId: instanceId, sourcePaused: paused, volumes, time: new Date().toISOString() });
  } catch (err) {
    throw new DriverError("MIGRATION_FAILED", `cannot reach the migration target ${targetUri}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export async function migrateDiskAndPowerOff(
  host: FakeHost,
  { instanceId, targetHost, timeoutSeconds, bootsFromVolume }: MigrateDiskOptions,
  call: CallOptions,
): Promise<void> {
  host.require("coldMigration", "migrateDiskAndPowerOff");
  await host.ready("migrateDiskAndPowerOff", true, call, instanceId);
  const d = host.get(instanceId);
  if (d.incoming) throw invalidState(`cannot migrate instance ${instanceId}: it is an incoming live migration`);
  refuseRootMismatch(d, bootsFromVolume === true);
  if (d.migratedTo !== undefined) {
    if (d.migratedTo === targetHost) return;
    throw invalidState(`cannot migrate instance ${instanceId} to ${targetHost}: its disk was handed to ${d.migratedTo}`);
  }
  await host.shutdownGuest(d, timeoutSeconds, call.signal);
  d.powerState = "SHUTDOWN";
  d.migratedTo = targetHost;
  await host.persist();
}

/**
 * A volume-booted instance has no local root disk to hand over: it moves
 * with `bootsFromVolume`, and only then (INVALID_STATE otherwise, either
 * way, as on libvirt).
 */
function refuseRootMismatch(d: FakeDomain, bootsFromVolume: boolean): void {
  const root = rootVolumeOf(d);
  if (root && !bootsFromVolume) {
    throw invalidState(`cannot migrate instance ${d.instance.id}: it boots from a volume (attachment ${root.attachmentId}), it has no local root disk to hand over`);
  }
  if (!root && bootsFromVolume) throw invalidState(`cannot migrate instance ${d.instance.id} as booted from a volume: its root disk is local`);
}

/**
 * Target side: the new copy, from the disk handed over, or (`rootVolume`)
 * booted from its volume taking no local disk, with `volumes` attached.
 */
export async function finishMigration(host: FakeHost, { instance, powerOn, rootVolume, volumes }: FinishMigrationOptions, call: CallOptions): Promise<void> {
  host.require("coldMigration", "finishMigration");
  const attached = initialVolumes(host, instance.id, "finish the migration of an instance with volumes", rootVolume, volumes);
  await host.ready("finishMigration", true, call, instance.id);
  const existing = host.state.domains.get(instance.id);
  if (existing && existing.migratedTo === undefined) {
    const sameRoot = rootVolumeOf(existing)?.attachmentId === rootVolume?.attachmentId;
    if (existing.incoming || !sameInstance(existing.instance, instance) || !sameRoot) {
      throw new DriverError(
        "INSTANCE_EXISTS",
        `instance ${instance.id} already exists on ${host.options.hostname} with another spec (${existing.powerState})`,
      );
    }
    if (!powerOn || existing.powerState === "RUNNING") return;
    if (!ACTIVE_POWER_STATES.has(existing.powerState)) {
      host.checkFits(existing.instance, { memory: true }, "power on", instance.id);
    }
    host.start(existing);
    await host.persist();
    return;
  }
  host.checkFits(rootVolume ? { ...instance, diskGb: 0 } : instance, { disk: true, memory: powerOn }, "finish the migration of");
  if (existing) host.state.stashes.set(instance.id, existing); // resize in place: set the old copy aside
  host.state.domains.set(instance.id, { instance, powerState: powerOn ? "RUNNING" : "SHUTDOWN", boots: powerOn ? 1 : 0, ...(attached ? { volumes: attached } : {}) });
  await host.persist();
}

export async function confirmMigration(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  host.require("coldMigration", "confirmMigration");
  await host.ready("confirmMigration", true, call, instanceId);
  let changed = host.state.stashes.delete(instanceId);
  if (host.state.domains.get(instanceId)?.migratedTo !== undefined) {
    host.state.domains.delete(instanceId);
    changed = true;
  }
  if (changed) await host.persist();
}

export async function finishRevertMigration(host: FakeHost, { instanceId, powerOn }: FinishRevertMigrationOptions, call: CallOptions): Promise<void> {
  host.require("coldMigration", "finishRevertMigration");
  await host.ready("finishRevertMigration", true, call, instanceId);
  const stash = host.state.stashes.get(instanceId);
  const d = stash ?? host.get(instanceId);
  if (d.incoming) throw invalidState(`cannot revert instance ${instanceId}: it is an incoming live migration`);
  const start = powerOn && d.powerState !== "RUNNING";
  if (start && !ACTIVE_POWER_STATES.has(d.powerState)) host.checkFits(d.instance, { memory: true }, "power on", instanceId);
  if (stash) {
    host.state.stashes.delete(instanceId);
    host.state.domains.set(instanceId, stash); // replaces the new copy of a resize in place
  }
  delete d.migratedTo;
  if (start) host.start(d);
  await host.persist();
}

export async function preLiveMigration(host: FakeHost, { instance, sourceHost }: PreLiveMigrationOptions, call: CallOptions): Promise<void> {
  host.require("liveMigration", "preLiveMigration");
  await host.ready("preLiveMigration", true, call, instance.id);
  const existing = host.state.domains.get(instance.id);
  if (existing) {
    if (existing.incoming && sameInstance(existing.instance, instance)) return;
    throw new DriverError("INSTANCE_EXISTS", `instance ${instance.id} already exists on ${host.options.hostname} (${existing.powerState})`);
  }
  host.checkFits(instance, { disk: true, memory: true }, "receive");
  host.state.domains.set(instance.id, { instance, powerState: "PAUSED", boots: 0, incoming: { sourceHost, paused: false } });
  await host.persist();
}

/**
 * {@link LIVE_MIGRATION_STEPS} steps, each waiting the call's delay (its
 * `liveMigrate` fault `delayMs`, else `delayMs`); progress 0, then after
 * each step. An injected failure strikes half way.
 */
export async function liveMigrate(
  host: FakeHost,
  { instanceId, targetHost, targetUri, volumes, onProgress }: LiveMigrateOptions,
  call: CallOptions,
): Promise<void> {
  host.require("liveMigration", "liveMigrate");
  const aborted = () =>
    new DriverError("ABORTED", `live migration of ${instanceId} to ${targetHost} aborted; it stays on ${host.options.hostname}`, {
      retryable: false,
      cause: call.signal?.reason,
    });
  if (call.signal?.aborted) throw aborted();
  await host.ready("liveMigrate", true, call, instanceId, false);
  const d = host.owned(instanceId, "live migrate");
  if (!ACTIVE_POWER_STATES.has(d.powerState)) {
    throw invalidState(`cannot live migrate instance ${instanceId}: it is ${d.powerState}`);
  }
  const arriving = migratedVolumes(d, volumes, targetHost);
  // The contract forbids onProgress to throw: progress is the caller's best effort, not ours.
  const progress = (percent: number, message: string) => onProgress?.(percent, message);
  const stepMs = host.injector.delayMs("liveMigrate", true, instanceId);
  const totalMib = d.instance.memoryMb;
  progress(0, `migrating to ${targetHost}`);
  for (let step = 1; step <= LIVE_MIGRATION_STEPS; step++) {
    try {
      await wait(stepMs, call.signal);
    } catch (err) {
      if (call.signal?.aborted) throw aborted();
      throw err;
    }
    if (step === Math.ceil(LIVE_MIGRATION_STEPS / 2)) host.injector.check("liveMigrate", instanceId);
    if (step < LIVE_MIGRATION_STEPS) {
      const percent = Math.round((step * 100) / LIVE_MIGRATION_STEPS);
      progress(percent, `memory: ${Math.round((totalMib * step) / LIVE_MIGRATION_STEPS)} MiB of ${totalMib} MiB copied`);
    }
  }
  if (call.signal?.aborted) throw aborted();
  await handOver(host, targetUri, instanceId, host.get(instanceId).powerState === "PAUSED", arriving);
  host.state.domains.delete(instanceId);
  await host.persist();
  progress(100, `migrated to ${targetHost}`);
}

export async function postLiveMigration(host: FakeHost, { instanceId }: PostLiveMigrationOptions, call: CallOptions): Promise<void> {
  host.require("liveMigration", "postLiveMigration");
  await host.ready("postLiveMigration", true, call, instanceId);
  const d = host.get(instanceId);
  if (d.incoming) {
    d.powerState = d.incoming.paused ? "PAUSED" : "RUNNING";
    delete d.incoming;
    await host.persist();
    return;
  }
  if (d.migratedTo === undefined && (d.powerState === "RUNNING" || d.powerState === "PAUSED")) return;
  throw invalidState(`instance ${instanceId} is not an incoming live migration (it is ${d.powerState})`);
}

export async function rollbackLiveMigration(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  host.require("liveMigration", "rollbackLiveMigration");
  await host.ready("rollbackLiveMigration", true, call, instanceId);
  const d = host.state.domains.get(instanceId);
  if (!d) return;
  if (!d.incoming) throw invalidState(`instance ${instanceId} is not an incoming live migration; not removing it`);
  host.state.domains.delete(instanceId);
  await host.persist();
}
