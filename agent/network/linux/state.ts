/**
 * What the linux network driver has plugged, kept on disk so a restarted
 * agent knows it: `<stateDir>/instances/<instance id>.json` holds an
 * instance's PortSpecs, `<stateDir>/networks.json` the networks whose
 * devices the driver made (to remove what nothing uses after a restart),
 * `<stateDir>/peers.json` the last VXLAN peers. Written atomically.
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { NetworkSpec, PortSpec } from "../types.js";
import { readIfExists, writeAtomic } from "./files.js";

/** One instance's file. */
interface InstanceFile {
  readonly instanceId: string;
  readonly ports: readonly PortSpec[];
}

/** The driver's state on disk and in memory. */
export class NetworkState {
  /** Ports by instance. */
  readonly instances = new Map<string, PortSpec[]>();
  /** Networks whose devices the driver made or uses, by id (the latest spec seen). */
  readonly networks = new Map<string, NetworkSpec>();
  /** The peers last given to `setPeers`. */
  peers: string[] = [];

  constructor(readonly dir: string) {}

  private get instancesDir(): string {
    return join(this.dir, "instances");
  }

  /** Loads everything from disk (missing files: empty). */
  async load(): Promise<void> {
    await mkdir(this.instancesDir, { recursive: true, mode: 0o755 });
    this.instances.clear();
    for (const name of await readdir(this.instancesDir)) {
      if (!name.endsWith(".json")) continue;
      const file = JSON.parse(await readFile(join(this.instancesDir, name), "utf8")) as InstanceFile;
      this.instances.set(file.instanceId, [...file.ports]);
    }
    this.networks.clear();
    const nets = await readIfExists(join(this.dir, "networks.json"));
    for (const n of nets ? (JSON.parse(nets) as NetworkSpec[]) : []) this.networks.set(n.id, n);
    const peers = await readIfExists(join(this.dir, "peers.json"));
    this.peers = peers ? (JSON.parse(peers) as string[]) : [];
  }

  /** Writes one instance's ports (none: removes its file). */
  async saveInstance(instanceId: string): Promise<void> {
    const path = join(this.instancesDir, `${encodeURIComponent(instanceId)}.json`);
    const ports = this.instances.get(instanceId);
    if (!ports || ports.length === 0) {
      this.instances.delete(instanceId);
      await rm(path, { force: true });
      return;
    }
    const file: InstanceFile = { instanceId, ports };
    await writeAtomic(path, JSON.stringify(file, null, 2));
  }

  /** Writes the networks. */
  async saveNetworks(): Promise<void> {
    await writeAtomic(join(this.dir, "networks.json"), JSON.stringify([...this.networks.values()], null, 2));
  }

  /** Writes the peers. */
  async savePeers(): Promise<void> {
    await writeAtomic(join(this.dir, "peers.json"), JSON.stringify(this.peers));
  }

  /** Every plugged port of network `networkId`, over all instances. */
  portsOf(networkId: string): PortSpec[] {
    return [...this.instances.values()].flat().filter((p) => p.network.id === networkId);
  }

  /** Ids of the networks some plugged port is on. */
  usedNetworks(): Set<string> {
    return new Set([...this.instances.values()].flat().map((p) => p.network.id));
  }
}

