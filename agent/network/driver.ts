/**
 * The network driver: the agent's hands on a host's network, beside the
 * hypervisor driver (Nova's VIF plugging with the nova-network role of the
 * host). The hypervisor driver creates the tap a VifSpec names and puts it
 * on its bridge; the network driver makes everything around it: the
 * network's bridge, its VXLAN device, the DHCP server that gives the port
 * exactly its address, and the port's security rules.
 *
 * Every method is idempotent, and every rejection is a DriverError
 * (agent/drivers/errors.ts) with a machine code.
 */
import type { PortSpec, VifSpec } from "./types.js";

export interface NetworkDriver {
  /** Which implementation ("fake", "linux"). */
  readonly kind: string;

  /** The VIF a port is attached as on this host; pure, known before {@link plug}. */
  vif(port: PortSpec): VifSpec;

  /**
   * Makes the host side of an instance's ports ready, before the hypervisor
   * creates (or receives) the instance: the network's bridge (and VXLAN
   * device, with the current peers), a DHCP host entry per port (the port's
   * MAC gets exactly its fixed IPs), and the port's security rules.
   * Plugging a port already plugged updates it (new rules, new addresses).
   * Ports of the instance not named stay as they are. The ports are
   * recorded before anything is made, so a plug that fails half-way is
   * undone by `unplug` (or `reconcile`) of the instance.
   */
  plug(instanceId: string, ports: readonly PortSpec[]): Promise<VifSpec[]>;

  /**
   * Removes the host side of an instance's ports (all of them, or those
   * named): DHCP entries, security rules. A network's bridge, VXLAN device
   * and DHCP server go when no port of it is left on this host (a `flat`
   * network's operator bridge is never removed). Unknown ports resolve.
   */
  unplug(instanceId: string, portIds?: readonly string[]): Promise<void>;

  /** The other hosts' underlay addresses VXLAN traffic is sent to (head-end replication). */
  setPeers(peers: readonly string[]): Promise<void>;

  /** This host's underlay address for VXLAN, "" if it has none. */
  readonly tunnelIp: string;

  /**
   * After an agent restart: `instanceIds` are the instances the hypervisor
   * has; the host side of every other instance's ports is removed, as is
   * anything this driver made that nothing uses.
   */
  reconcile(instanceIds: readonly string[]): Promise<void>;

  /** What is plugged now, by instance: for tests and reports. */
  plugged(): Promise<ReadonlyMap<string, readonly PortSpec[]>>;

  /** Stops whatever the driver runs in the background (not the DHCP servers, which outlive the agent). */
  close(): Promise<void>;
}
