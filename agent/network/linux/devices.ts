/**
 * The layer-2 devices of a network on a host: its bridge (made per VXLAN
 * network, the operator's for a `flat` one), the VXLAN device on it, and
 * the VXLAN device's flood list (head-end replication to every peer).
 */
import type { Logger } from "pino";
import { DriverError } from "../../drivers/errors.js";
import type { NetworkSpec } from "../types.js";
import { isNotFound, type Runner } from "./commands.js";
import { vxlanBridgeName, vxlanDeviceName } from "./naming.js";

/** The all-zeros MAC of a VXLAN device's default (flood) forwarding entries. */
const FLOOD_MAC = "00:00:00:00:00:00";

/** A link as `ip -j link` shows it. */
export interface IpLink {
  readonly ifindex: number;
  readonly ifname: string;
  readonly master?: string;
  readonly mtu?: number;
  readonly linkinfo?: { readonly info_kind?: string; readonly info_data?: { readonly id?: number; readonly port?: number; readonly local?: string } };
}

interface FdbEntry {
  readonly mac: string;
  readonly dst?: string;
}

/** The bridge a network's ports join on this host. */
export function bridgeOf(network: NetworkSpec): string {
  return network.segmentation === "flat" ? network.physicalBridge : vxlanBridgeName(network.id);
}

/** Makes, checks and removes networks' bridges and VXLAN devices. */
export class Devices {
  constructor(
    private readonly run: Runner,
    private readonly log: Logger,
    private readonly vxlanPort: number,
  ) {}

  /** The link named `name`, or undefined. */
  async link(name: string): Promise<IpLink | undefined> {
    try {
      const [link] = await this.run.ipJson<IpLink>("-d", "link", "show", "dev", name);
      return link;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Names of the interfaces enslaved to bridge `bridge`. */
  async members(bridge: string): Promise<string[]> {
    const links = await this.run.ipJson<IpLink>("link", "show", "master", bridge);
    return links.map((l) => l.ifname);
  }

  /**
   * Makes the network's bridge ready: a `flat` network's operator bridge
   * must exist (else a non-retryable "NETWORK_BRIDGE_MISSING"); a VXLAN
   * network's bridge and VXLAN device (VNI, `tunnelIp`, MTU) are made if
   * missing, with `peers` as the flood list. Either way the bridge passes
   * its IPv4 traffic through the IP hooks (`nf_call_iptables`), where the
   * ports' security rules are.
   */
  async ensure(network: NetworkSpec, tunnelIp: string, peers: readonly string[]): Promise<string> {
    const bridge = bridgeOf(network);
    if (network.segmentation === "flat") {
      const link = await this.link(bridge);
      if (!link || link.linkinfo?.info_kind !== "bridge") {
        throw new DriverError("NETWORK_BRIDGE_MISSING", `flat network ${network.id}: bridge "${bridge}" is not on this host`, { retryable: false });
      }
      await this.run.ip("link", "set", "dev", bridge, "type", "bridge", "nf_call_iptables", "1");
      return bridge;
    }
    if (!tunnelIp) {
      throw new DriverError("NO_TUNNEL_IP", `network ${network.id} is VXLAN but this host has no tunnel address`, { retryable: false });
    }
    const vx = vxlanDeviceName(network.id);
    if (!(await this.link(bridge))) {
      await this.run.ip("link", "add", bridge, "mtu", String(network.mtu), "type", "bridge", "nf_call_iptables", "1");
    } else {
      await this.run.ip("link", "set", "dev", bridge, "type", "bridge", "nf_call_iptables", "1");
    }
    let existing = await this.link(vx);
    const data = existing?.linkinfo?.info_data;
    if (existing && data?.local !== tunnelIp && data?.local && (await this.localAddresses()).has(data.local) && data.id === network.vni) {
      // Another agent on this kernel made it with its own address: the device (one per VNI and port) is shared.
      this.log.debug({ device: vx, local: data.local }, "VXLAN device shared with another agent on this kernel");
    } else if (existing && (data?.id !== network.vni || data?.local !== tunnelIp || data?.port !== this.vxlanPort)) {
      this.log.warn({ device: vx, found: data, vni: network.vni, tunnelIp }, "VXLAN device does not match its network; making it again");
      await this.run.ip("link", "del", "dev", vx);
      existing = undefined;
    }
    if (!existing) {
      await this.run.ip(
        "link", "add", vx, "mtu", String(network.mtu), "type", "vxlan", "id", String(network.vni),
        "local", tunnelIp, "dstport", String(this.vxlanPort), "learning",
      );
    } else if (existing.mtu !== network.mtu) {
      await this.run.ip("link", "set", "dev", vx, "mtu", String(network.mtu));
    }
    await this.run.ip("link", "set", "dev", vx, "master", bridge);
    await this.run.ip("link", "set", "dev", vx, "up");
    await this.run.ip("link", "set", "dev", bridge, "up");
    await this.syncPeers(vx, peers);
    return bridge;
  }

  /**
   * Makes the flood list of VXLAN device `vx` exactly `peers`: appends an
   * all-zeros entry per new peer, deletes those of peers gone.
   */
  async syncPeers(vx: string, peers: readonly string[]): Promise<void> {
    const entries = JSON.parse((await this.run.bridge("-j", "fdb", "show", "dev", vx)) || "[]") as FdbEntry[];
    const have = new Set(entries.filter((e) => e.mac === FLOOD_MAC && e.dst).map((e) => e.dst as string));
    const want = new Set(peers);
    for (const peer of want) {
      if (!have.has(peer)) await this.run.bridge("fdb", "append", FLOOD_MAC, "dev", vx, "dst", peer);
    }
    for (const peer of have) {
      if (!want.has(peer)) await this.run.bridge("fdb", "del", FLOOD_MAC, "dev", vx, "dst", peer);
    }
  }

  /** This namespace's own IPv4 addresses (peers among them are not flooded to). */
  async localAddresses(): Promise<Set<string>> {
    const links = await this.run.ipJson<{ addr_info?: { family: string; local: string }[] }>("-4", "addr", "show");
    return new Set(links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local)));
  }

  /** The VXLAN devices of this namespace made by a network driver. */
  async vxlanDevices(): Promise<string[]> {
    const links = await this.run.ipJson<IpLink>("link", "show", "type", "vxlan");
    return links.map((l) => l.ifname).filter((n) => n.startsWith("nmvx"));
  }

  /**
   * Removes a VXLAN network's bridge and VXLAN device if nothing else is
   * attached to the bridge any more (another agent on this kernel may still
   * use it, or the hypervisor not have removed a tap yet). A `flat`
   * network's bridge is the operator's and stays. Resolves whether it was removed.
   */
  async removeIfUnused(network: NetworkSpec): Promise<boolean> {
    if (network.segmentation === "flat") return false;
    return this.removeBridgeIfUnused(vxlanBridgeName(network.id), vxlanDeviceName(network.id));
  }

  /** {@link removeIfUnused} by names. */
  async removeBridgeIfUnused(bridge: string, vx: string): Promise<boolean> {
    if (!(await this.link(bridge))) {
      await this.deleteLink(vx);
      return true;
    }
    const others = (await this.members(bridge)).filter((m) => m !== vx);
    if (others.length > 0) {
      this.log.info({ bridge, attached: others }, "bridge still has interfaces attached; kept");
      return false;
    }
    await this.deleteLink(vx);
    await this.deleteLink(bridge);
    return true;
  }

  /** Deletes a link; one already gone is fine. */
  async deleteLink(name: string): Promise<void> {
    try {
      await this.run.ip("link", "del", "dev", name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
