/**
 * The fake network driver: in memory, with the linux driver's semantics
 * and names (the same VifSpecs), for the fake hypervisor and tests. It
 * records the ports plugged per instance, the peers, and the networks
 * "present" on the host (a network is present while a port of it is
 * plugged). With `statePath` it keeps all that in a JSON file, so it
 * survives an agent restart as the linux driver's state does.
 */
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { DriverError } from "../../drivers/errors.js";
import { settledOf } from "../../settled.js";
import type { NetworkDriver } from "../driver.js";
import { bridgeOf } from "../linux/devices.js";
import { readIfExists, writeAtomic } from "../linux/files.js";
import { tapName } from "../linux/naming.js";
import type { NetworkSpec, PortSpec, VifSpec } from "../types.js";

/** Options of the fake network driver; every field has a default. */
export interface FakeNetworkDriverOptions {
  /** The host's underlay address ("" by default: VXLAN networks are refused with "NO_TUNNEL_IP"). */
  readonly tunnelIp?: string;
  /**
   * The operator bridges this host has for `flat` networks; a flat network
   * naming another is refused with "NETWORK_BRIDGE_MISSING". Default: any.
   */
  readonly physicalBridges?: readonly string[];
  /** JSON file holding what is plugged, so it outlives the process (default: in memory only). */
  readonly statePath?: string;
}

/** What the fake driver keeps. */
interface FakeNetworkState {
  instances: Record<string, PortSpec[]>;
  peers: string[];
}

/** An in-memory network driver. */
export class FakeNetworkDriver implements NetworkDriver {
  readonly kind = "fake";
  readonly tunnelIp: string;
  private readonly options: FakeNetworkDriverOptions;
  private state: FakeNetworkState = { instances: {}, peers: [] };
  private loaded: Promise<void> | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(options: FakeNetworkDriverOptions = {}) {
    this.options = options;
    this.tunnelIp = options.tunnelIp ?? "";
  }

  vif(port: PortSpec): VifSpec {
    return { portId: port.id, mac: port.mac.toLowerCase(), bridge: bridgeOf(port.network), tap: tapName(port.id), mtu: port.network.mtu };
  }

  private serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.queue.then(async () => {
      // A failed load is tried again by the next call.
      this.loaded ??= this.load().catch((err: unknown) => {
        this.loaded = undefined;
        throw err;
      });
      await this.loaded;
      return fn();
    });
    this.queue = settledOf(result);
    return result;
  }

  private async load(): Promise<void> {
    if (!this.options.statePath) return;
    const text = await readIfExists(this.options.statePath);
    if (text) this.state = JSON.parse(text) as FakeNetworkState;
  }

  private async persist(): Promise<void> {
    if (!this.options.statePath) return;
    await mkdir(dirname(this.options.statePath), { recursive: true });
    await writeAtomic(this.options.statePath, JSON.stringify(this.state, null, 2));
  }

  private check(network: NetworkSpec): void {
    if (network.segmentation === "vxlan" && !this.tunnelIp) {
      throw new DriverError("NO_TUNNEL_IP", `network ${network.id} is VXLAN but this host has no tunnel address`, { retryable: false });
    }
    const bridges = this.options.physicalBridges;
    if (network.segmentation === "flat" && bridges && !bridges.includes(network.physicalBridge)) {
      throw new DriverError("NETWORK_BRIDGE_MISSING", `flat network ${network.id}: bridge "${network.physicalBridge}" is not on this host`, {
        retryable: false,
      });
    }
  }

  plug(instanceId: string, ports: readonly PortSpec[]): Promise<VifSpec[]> {
    return this.serial(async () => {
      for (const p of ports) this.check(p.network);
      // A port plugged again (a refresh) keeps its place; new ones come after.
      const given = new Map(ports.map((p) => [p.id, structuredClone(p)]));
      const current = (this.state.instances[instanceId] ?? []).map((p) => {
        const again = given.get(p.id);
        given.delete(p.id);
        return again ?? p;
      });
      this.state.instances[instanceId] = [...current, ...given.values()];
      await this.persist();
      return ports.map((p) => this.vif(p));
    });
  }

  unplug(instanceId: string, portIds?: readonly string[]): Promise<void> {
    return this.serial(async () => {
      const current = this.state.instances[instanceId];
      if (!current) return;
      const left = portIds ? current.filter((p) => !portIds.includes(p.id)) : [];
      if (left.length > 0) this.state.instances[instanceId] = left;
      else delete this.state.instances[instanceId];
      await this.persist();
    });
  }

  setPeers(peers: readonly string[]): Promise<void> {
    return this.serial(async () => {
      this.state.peers = [...new Set(peers)].filter((p) => p !== this.tunnelIp);
      await this.persist();
    });
  }

  /** The peers VXLAN traffic would be flooded to (those given, without this host's own address). */
  peers(): Promise<readonly string[]> {
    return this.serial(() => [...this.state.peers]);
  }

  /** The networks present on this host (some port of them plugged), by id. */
  networks(): Promise<ReadonlyMap<string, NetworkSpec>> {
    return this.serial(() => new Map(Object.values(this.state.instances).flat().map((p) => [p.network.id, p.network])));
  }

  reconcile(instanceIds: readonly string[]): Promise<void> {
    return this.serial(async () => {
      const keep = new Set(instanceIds);
      for (const id of Object.keys(this.state.instances)) if (!keep.has(id)) delete this.state.instances[id];
      await this.persist();
    });
  }

  plugged(): Promise<ReadonlyMap<string, readonly PortSpec[]>> {
    return this.serial(() => new Map(Object.entries(this.state.instances).map(([id, ports]) => [id, structuredClone(ports)])));
  }

  close(): Promise<void> {
    return this.queue;
  }
}
