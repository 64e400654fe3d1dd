/**
 * Names of what the network drivers make on a host. Linux interface names
 * have at most 15 characters; every name is a pure function of ids, so a
 * restarted agent finds what it made, and the hypervisor can be told a
 * VIF's tap before it exists.
 */
import { createHash } from "node:crypto";

/** Longest Linux interface name (IFNAMSIZ - 1). */
export const IFNAME_MAX = 15;

/** The first `n` hex characters of a UUID (dashes removed). */
export function idHex(id: string, n: number): string {
  return id.replaceAll("-", "").toLowerCase().slice(0, n);
}

/** A port's tap: "tap" + the first 11 characters of its id without dashes (Nova's `tapXXXXXXXX-XX` without the dash). */
export function tapName(portId: string): string {
  return `tap${idHex(portId, 11)}`;
}

/** A VXLAN network's bridge: "nmbr" + the first 10 hex characters of its id. */
export function vxlanBridgeName(networkId: string): string {
  return `nmbr${idHex(networkId, 10)}`;
}

/** A VXLAN network's VXLAN device: "nmvx" + the first 10 hex characters of its id. */
export function vxlanDeviceName(networkId: string): string {
  return `nmvx${idHex(networkId, 10)}`;
}

/** What a host tag may be: 1 to 4 lowercase letters or digits. */
export const HOST_TAG_PATTERN = /^[a-z0-9]{1,4}$/;

/**
 * The default host tag: 4 hex characters of the SHA-256 of the host name,
 * so two agents of different names on one kernel get different tags.
 */
export function defaultHostTag(hostname: string): string {
  return createHash("sha256").update(hostname).digest("hex").slice(0, 4);
}

/** Throws a RangeError unless `tag` is a valid host tag. */
export function checkHostTag(tag: string): string {
  if (!HOST_TAG_PATTERN.test(tag)) throw new RangeError(`hostTag must be 1 to 4 lowercase letters or digits, got "${tag}"`);
  return tag;
}

/** Names of one agent's things on one network: its DHCP namespace and the veth pair into it. */
export interface DhcpNames {
  /** The network namespace dnsmasq runs in (Neutron's `qdhcp-<network>`), per agent. */
  readonly namespace: string;
  /** The veth end on the bridge: "nd" + tag + network id hex, 15 characters at most. */
  readonly hostVeth: string;
  /** The veth end in the namespace, which carries the DHCP port's MAC and addresses. */
  readonly nsVeth: string;
}

/** Names of the DHCP side of `networkId` for the agent tagged `tag`. */
export function dhcpNames(tag: string, networkId: string): DhcpNames {
  return {
    namespace: `nmdhcp-${tag}-${networkId}`,
    hostVeth: `nd${tag}${idHex(networkId, IFNAME_MAX - 2 - tag.length)}`,
    nsVeth: "nmdhcp0",
  };
}

/** Prefix of the DHCP namespaces of the agent tagged `tag`. */
export function dhcpNamespacePrefix(tag: string): string {
  return `nmdhcp-${tag}-`;
}

/** The agent's nftables tables (one in the bridge family, one in the inet family), "nm_" + tag. */
export function nftTableName(tag: string): string {
  return `nm_${tag}`;
}
