import type { Logger } from "pino";

/** Options of the linux network driver. */
export interface LinuxNetworkDriverOptions {
  /** Host name (for messages, and the default host tag). */
  readonly hostname: string;
  /**
   * Short tag (1 to 4 lowercase letters or digits) in the name of everything
   * per agent (DHCP namespaces and veths, nft tables), so two agents on one
   * kernel never clash. Default: derived from `hostname`.
   */
  readonly hostTag?: string;
  /** This host's underlay address for VXLAN; "" (default): VXLAN networks are refused ("NO_TUNNEL_IP"). */
  readonly tunnelIp?: string;
  /** UDP port of VXLAN (default 4789). */
  readonly vxlanPort?: number;
  /** Directory of the driver's state and DHCP files (default `/var/lib/novamesh/network-<tag>`); per agent. */
  readonly stateDir?: string;
  /**
   * An existing named network namespace the driver works in: every ip,
   * bridge, nft and sysctl command runs under `ip netns exec <netns>` (a
   * host simulated in a namespace). Default: the agent's own.
   */
  readonly netns?: string;
  /** Lease time DHCP hands out, seconds (default 86400). */
  readonly dhcpLeaseSeconds?: number;
  /** The dnsmasq executable (default /usr/sbin/dnsmasq). */
  readonly dnsmasqPath?: string;
  /** Time one command may take, milliseconds (default 15000). */
  readonly commandTimeoutMs?: number;
  /** Where the driver logs what it could not do and carried on without; default: nowhere. */
  readonly logger?: Logger;
}
