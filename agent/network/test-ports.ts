/** PortSpecs and NetworkSpecs for tests. */
import { randomUUID } from "node:crypto";
import type { NetworkSpec, PortSpec, SecurityRuleSpec } from "./types.js";

/** A random unicast MAC in OpenStack's fa:16:3e range. */
export function testMac(): string {
  const b = randomUUID().replaceAll("-", "");
  return `fa:16:3e:${b.slice(0, 2)}:${b.slice(2, 4)}:${b.slice(4, 6)}`;
}

/** A one-subnet network ("10.<n>.0.0/24", gateway .1, DHCP port at .2 unless `dhcp` is false). */
export function testNetwork(n: number, overrides: Partial<NetworkSpec> & { readonly dhcp?: boolean } = {}): NetworkSpec {
  const id = overrides.id ?? randomUUID();
  const subnetId = randomUUID();
  const dhcp = overrides.dhcp ?? true;
  return {
    id,
    segmentation: "vxlan",
    physicalBridge: "",
    vni: 1000 + n,
    mtu: 1450,
    subnets: [{ id: subnetId, cidr: `10.${n}.0.0/24`, gatewayIp: `10.${n}.0.1`, dnsServers: ["192.0.2.53"], hostRoutes: [], dhcp }],
    dhcpPort: dhcp ? { id: randomUUID(), mac: testMac(), fixedIps: [{ subnetId, address: `10.${n}.0.2` }] } : null,
    ...overrides,
  };
}

/** A port on `network` with address host `.host` of its first subnet. */
export function testPort(network: NetworkSpec, host: number, overrides: Partial<PortSpec> = {}): PortSpec {
  const subnet = network.subnets[0];
  if (!subnet) throw new Error("the network has no subnet");
  const prefix = subnet.cidr.split(".").slice(0, 3).join(".");
  return {
    id: randomUUID(),
    mac: testMac(),
    fixedIps: [{ subnetId: subnet.id, address: `${prefix}.${host}` }],
    network,
    portSecurity: true,
    securityRules: [],
    ...overrides,
  };
}

/** A security rule; anything not given matches anything. */
export function testRule(direction: "ingress" | "egress", overrides: Partial<SecurityRuleSpec> = {}): SecurityRuleSpec {
  return { direction, protocol: "", portMin: 0, portMax: 0, remoteCidr: "", remoteAddresses: null, ...overrides };
}

/** The default security group's rules: all egress, ingress from the group's own addresses. */
export function defaultGroupRules(groupAddresses: readonly string[]): SecurityRuleSpec[] {
  return [testRule("egress"), testRule("ingress", { remoteAddresses: [...groupAddresses] })];
}
