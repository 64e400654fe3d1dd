/**
 * The linux network driver: real Linux bridges, VXLAN, network namespaces,
 * veth pairs, dnsmasq and nftables on the host (Neutron's Linux bridge
 * agent and DHCP agent, per host). See README.md for the design.
 *
 *   naming.ts     names of taps, bridges, VXLAN devices, namespaces, tables
 *   commands.ts   running ip, bridge, nft, dnsmasq (optionally in a namespace)
 *   devices.ts    bridges, VXLAN devices, their flood lists
 *   dhcp.ts       per network: namespace, veth, dnsmasq
 *   security.ts   per port: anti-spoofing and security groups on nftables
 *   conntrack.ts  per port: deleting connection entries its rules no longer admit
 *   state.ts      what is plugged, on disk, for a restarted agent
 *
 * Calls run one at a time. Best-effort steps (cleanup of what nothing uses)
 * are logged to `logger` when they fail.
 */
import { hostname as osHostname } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { bestEffort } from "../../best-effort.js";
import { DriverError } from "../../drivers/errors.js";
import { settledOf } from "../../settled.js";
import type { NetworkDriver } from "../driver.js";
import type { NetworkSpec, PortSpec, VifSpec } from "../types.js";
import { Runner } from "./commands.js";
import { Connections, directionsToFlush } from "./conntrack.js";
import { Devices, bridgeOf } from "./devices.js";
import { DhcpServers } from "./dhcp.js";
import { checkHostTag, defaultHostTag, tapName, vxlanDeviceName } from "./naming.js";
import type { LinuxNetworkDriverOptions } from "./options.js";
import { SecurityTables, zoneOf } from "./security.js";
import { NetworkState } from "./state.js";

export type { LinuxNetworkDriverOptions } from "./options.js";

/** The host side of ports on Linux bridges and VXLAN, with dnsmasq and nftables. */
export class LinuxNetworkDriver implements NetworkDriver {
  readonly kind = "linux";
  readonly tunnelIp: string;
  /** The tag in the names of this agent's namespaces, veths and tables. */
  readonly hostTag: string;
  /** Where the driver keeps its state. */
  readonly stateDir: string;
  private readonly log: Logger;
  private readonly run: Runner;
  private readonly devices: Devices;
  private readonly dhcp: DhcpServers;
  private readonly security: SecurityTables;
  private readonly connections: Connections;
  private readonly state: NetworkState;
  private loaded: Promise<void> | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(options: LinuxNetworkDriverOptions) {
    this.hostTag = checkHostTag(options.hostTag ?? defaultHostTag(options.hostname || osHostname()));
    this.tunnelIp = options.tunnelIp ?? "";
    this.stateDir = options.stateDir ?? `/var/lib/novamesh/network-${this.hostTag}`;
    if (!this.stateDir.startsWith("/")) throw new RangeError(`stateDir must be absolute, got "${this.stateDir}"`);
    this.log = (options.logger ?? pino({ enabled: false })).child({ driver: "network-linux", hostTag: this.hostTag });
    this.run = new Runner(options.netns || undefined, options.commandTimeoutMs);
    this.devices = new Devices(this.run, this.log, options.vxlanPort ?? 4789);
    this.dhcp = new DhcpServers(this.run, this.log, {
      dir: join(this.stateDir, "dhcp"),
      tag: this.hostTag,
      dnsmasqPath: options.dnsmasqPath ?? "/usr/sbin/dnsmasq",
      leaseSeconds: options.dhcpLeaseSeconds ?? 86400,
    });
    this.security = new SecurityTables(this.run, this.log, this.hostTag);
    this.connections = new Connections(this.run, this.log);
    this.state = new NetworkState(this.stateDir);
  }

  vif(port: PortSpec): VifSpec {
    return { portId: port.id, mac: port.mac.toLowerCase(), bridge: bridgeOf(port.network), tap: tapName(port.id), mtu: port.network.mtu };
  }

  /** Runs `fn` after the state is loaded and every earlier call has settled; failures become DriverErrors. */
  private serial<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const result = this.queue.then(async () => {
      // A failed load is tried again by the next call.
      this.loaded ??= this.state.load().catch((err: unknown) => {
        this.loaded = undefined;
        throw err;
      });
      await this.loaded;
      return fn();
    });
    this.queue = settledOf(result);
    return result.catch((err: unknown) => {
      if (err instanceof DriverError) throw err;
      throw DriverError.from(err, `${what}_FAILED`);
    });
  }

  plug(instanceId: string, ports: readonly PortSpec[]): Promise<VifSpec[]> {
    return this.serial("PLUG", async () => {
      for (const port of ports) {
        if (port.network.segmentation === "vxlan" && !this.tunnelIp) {
          throw new DriverError("NO_TUNNEL_IP", `port ${port.id}: network ${port.network.id} is VXLAN but this host has no tunnel address`, {
            retryable: false,
          });
        }
      }
      // Checks a flat network's bridge before recording anything.
      for (const net of distinctNetworks(ports)) {
        if (net.segmentation === "flat") await this.devices.ensure(net, this.tunnelIp, []);
      }
      const current = this.state.instances.get(instanceId) ?? [];
      const before = new Map(current.map((p) => [p.id, p]));
      const named = new Set(ports.map((p) => p.id));
      this.state.instances.set(instanceId, [...current.filter((p) => !named.has(p.id)), ...ports]);
      for (const net of distinctNetworks(ports)) this.state.networks.set(net.id, net);
      await this.state.saveNetworks();
      await this.state.saveInstance(instanceId);
      await this.ensure(ports);
      for (const port of ports) await this.endUnadmitted(before.get(port.id), port);
      return ports.map((p) => this.vif(p));
    });
  }

  /** Makes the networks of `ports` ready (devices, DHCP) and applies the ports' security. */
  private async ensure(ports: readonly PortSpec[]): Promise<void> {
    const peers = await this.peers();
    for (const net of distinctNetworks(ports)) {
      const bridge = await this.devices.ensure(net, this.tunnelIp, peers);
      await this.dhcp.ensure(net, bridge, this.state.portsOf(net.id));
    }
    // Zones before rules: a flow the rules admit starts in its bridge's zone.
    await this.syncZones();
    for (const port of ports) await this.security.apply(port);
  }

  /**
   * After a replug whose rules admit less than `old`'s: deletes the
   * conntrack entries of the port's connections the new rules do not
   * admit, which `ct state established` would otherwise let on.
   *
   * Best effort, logged: the new rules are in place when this runs, so new
   * connections already meet them; a failure here leaves only connections
   * admitted before running until they end, as without this step. Failing
   * the plug instead would fail the operation or update that carried the
   * new rules (and retrying cannot mend a missing or broken conntrack
   * tool), while the port's filtering itself is done.
   */
  private async endUnadmitted(old: PortSpec | undefined, port: PortSpec): Promise<void> {
    if (directionsToFlush(old, port).length === 0) return;
    await bestEffort(
      this.log,
      "delete connection entries the port's rules no longer admit",
      async () => {
        const zone = await this.zoneOf(port.network);
        if (zone !== undefined) await this.connections.afterReplug(old, port, zone);
      },
      { port: port.id },
    );
  }

  /**
   * The conntrack zone of a network's bridged traffic: its bridge's for
   * VXLAN (undefined if the bridge is gone: no traffic, no entries), the
   * default zone 0 for flat networks.
   */
  private async zoneOf(net: NetworkSpec): Promise<number | undefined> {
    if (net.segmentation !== "vxlan") return 0;
    const link = await this.devices.link(bridgeOf(net));
    return link ? zoneOf(link.ifindex) : undefined;
  }

  /** Gives every VXLAN bridge of a network in use its conntrack zone (and no other bridge one). */
  private async syncZones(): Promise<void> {
    const want = new Map<string, number>();
    for (const id of this.state.usedNetworks()) {
      const net = this.state.networks.get(id);
      if (net?.segmentation !== "vxlan") continue;
      const link = await this.devices.link(bridgeOf(net));
      if (link) want.set(link.ifname, zoneOf(link.ifindex));
    }
    await this.security.syncZones(want);
  }

  /** The peers to flood to: those given, without this namespace's own addresses. */
  private async peers(): Promise<string[]> {
    const local = await this.devices.localAddresses();
    return this.state.peers.filter((p) => p !== this.tunnelIp && !local.has(p));
  }

  unplug(instanceId: string, portIds?: readonly string[]): Promise<void> {
    return this.serial("UNPLUG", () => this.unplugInner(instanceId, portIds));
  }

  private async unplugInner(instanceId: string, portIds?: readonly string[]): Promise<void> {
    const current = this.state.instances.get(instanceId) ?? [];
    const removed = portIds ? current.filter((p) => portIds.includes(p.id)) : current;
    if (removed.length > 0) {
      for (const port of removed) {
        await this.security.remove(tapName(port.id));
        // Best effort as after a replug (see endUnadmitted): the port is gone either way.
        await bestEffort(
          this.log,
          "delete the unplugged port's connection entries",
          async () => {
            const zone = await this.zoneOf(port.network);
            if (zone !== undefined) await this.connections.forget(port, zone);
          },
          { port: port.id },
        );
      }
      this.state.instances.set(
        instanceId,
        current.filter((p) => !removed.includes(p)),
      );
      await this.state.saveInstance(instanceId);
      for (const net of distinctNetworks(removed)) {
        const left = this.state.portsOf(net.id);
        if (left.length > 0) {
          const latest = this.state.networks.get(net.id) ?? net;
          await this.dhcp.ensure(latest, bridgeOf(latest), left);
        }
      }
    }
    await this.removeUnusedNetworks();
  }

  /**
   * Removes the DHCP server, VXLAN device and bridge of every network the
   * driver made that no plugged port is on (the bridge only once nothing is
   * attached to it). Tries them all, then rejects with the first failure.
   */
  private async removeUnusedNetworks(): Promise<void> {
    const used = this.state.usedNetworks();
    let first: unknown;
    for (const [id, net] of [...this.state.networks]) {
      if (used.has(id)) continue;
      try {
        await this.dhcp.remove(id);
        await this.syncZones();
        await this.devices.removeIfUnused(net);
        this.state.networks.delete(id);
        await this.state.saveNetworks();
      } catch (err) {
        this.log.warn({ err, network: id }, "removing an unused network failed");
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }

  setPeers(peers: readonly string[]): Promise<void> {
    return this.serial("SET_PEERS", async () => {
      this.state.peers = [...new Set(peers)];
      await this.state.savePeers();
      const want = await this.peers();
      for (const net of this.state.networks.values()) {
        if (net.segmentation !== "vxlan") continue;
        const vx = vxlanDeviceName(net.id);
        if (await this.devices.link(vx)) await this.devices.syncPeers(vx, want);
      }
    });
  }

  reconcile(instanceIds: readonly string[]): Promise<void> {
    return this.serial("RECONCILE", async () => {
      const keep = new Set(instanceIds);
      const failures: { instanceId?: string; err: unknown }[] = [];
      for (const id of [...this.state.instances.keys()]) {
        if (keep.has(id)) continue;
        try {
          await this.unplugInner(id);
        } catch (err) {
          failures.push({ instanceId: id, err });
        }
      }
      for (const [id, ports] of [...this.state.instances]) {
        try {
          await this.ensure(ports);
        } catch (err) {
          failures.push({ instanceId: id, err });
        }
      }
      const secured = new Set([...this.state.instances.values()].flat().filter((p) => p.portSecurity).map((p) => tapName(p.id)));
      const served = new Set(this.state.usedNetworks());
      await bestEffort(this.log, "remove security of ports not plugged", () => this.security.removeAllBut(secured));
      await bestEffort(this.log, "remove DHCP servers of networks not used", () => this.dhcp.removeAllBut(served));
      try {
        await this.removeUnusedNetworks();
      } catch (err) {
        failures.push({ err });
      }
      if (failures.length > 0) {
        for (const f of failures) this.log.warn({ err: f.err, instanceId: f.instanceId }, "reconcile step failed");
        const first = DriverError.from(failures[0]?.err);
        throw new DriverError("RECONCILE_FAILED", `reconcile: ${failures.length} step(s) failed; first: ${first.message}`, {
          retryable: true,
          cause: first,
        });
      }
    });
  }

  plugged(): Promise<ReadonlyMap<string, readonly PortSpec[]>> {
    return this.serial("PLUGGED", async () => new Map([...this.state.instances].map(([id, ports]) => [id, [...ports]])));
  }

  /**
   * Removes everything this agent made on the host: every port's security
   * and the agent's tables, DHCP servers, and the bridges and VXLAN devices
   * of its networks that nothing else uses. For decommissioning a host and
   * for tests; the state directory is emptied too.
   */
  purge(): Promise<void> {
    return this.serial("PURGE", async () => {
      for (const id of [...this.state.instances.keys()]) {
        this.state.instances.set(id, []);
        await this.state.saveInstance(id);
      }
      await this.dhcp.removeAllBut(new Set());
      await this.removeUnusedNetworks();
      await this.security.removeTables();
    });
  }

  close(): Promise<void> {
    return this.queue;
  }
}

/** The distinct networks of some ports (the last spec of each wins). */
function distinctNetworks(ports: readonly PortSpec[]): NetworkSpec[] {
  return [...new Map(ports.map((p) => [p.network.id, p.network])).values()];
}
