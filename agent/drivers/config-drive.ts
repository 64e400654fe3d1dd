/**
 * The content of a config drive in the OpenStack format, as Nova writes it
 * and cloud-init's ConfigDrive datasource reads it: a filesystem labelled
 * `config-2` with `openstack/latest/meta_data.json` (uuid, name, hostname,
 * availability zone, project, public keys, metadata),
 * `openstack/latest/user_data` (when given), `network_data.json` (links,
 * networks and DNS services of the instance's ports) and empty vendor data.
 * Deterministic: the same instance gives the same files, so a host that
 * makes the drive again (a move, a rebuild, an unshelve) gives the guest
 * what it had. Drivers put the files on a medium (libvirt: an ISO 9660
 * image made with xorriso).
 */
import type { PortSpec } from "../network/types.js";
import type { GuestSpec, InstanceSpec } from "./types.js";

/** The label cloud-init looks for. */
export const CONFIG_DRIVE_LABEL = "config-2";

/** An IPv4 prefix length as a dotted netmask. */
function netmask(prefix: number): string {
  const bits = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (bits >>> s) & 0xff).join(".");
}

/** network_data.json: each port a link, each fixed address a network on it, the subnets' DNS servers as services. */
export function networkData(ports: readonly PortSpec[]): unknown {
  const links = ports.map((p) => ({ id: `tap${p.id.slice(0, 11)}`, vif_id: p.id, type: "bridge", mtu: p.network.mtu, ethernet_mac_address: p.mac }));
  const networks: unknown[] = [];
  const dns = new Set<string>();
  ports.forEach((p, i) => {
    for (const ip of p.fixedIps) {
      const subnet = p.network.subnets.find((s) => s.id === ip.subnetId);
      if (!subnet) continue;
      for (const d of subnet.dnsServers) dns.add(d);
      const id = `network${networks.length}`;
      const common = { id, link: links[i]!.id, network_id: p.network.id };
      if (subnet.dhcp) {
        networks.push({ ...common, type: "ipv4_dhcp" });
        continue;
      }
      const prefix = Number(subnet.cidr.split("/")[1]);
      const routes = [
        ...(subnet.gatewayIp ? [{ network: "0.0.0.0", netmask: "0.0.0.0", gateway: subnet.gatewayIp }] : []),
        ...subnet.hostRoutes.map((r) => ({ network: r.destination.split("/")[0], netmask: netmask(Number(r.destination.split("/")[1])), gateway: r.nexthop })),
      ];
      networks.push({
        ...common,
        type: "ipv4",
        ip_address: ip.address,
        netmask: netmask(prefix),
        routes,
        services: subnet.dnsServers.map((address) => ({ type: "dns", address })),
      });
    }
  });
  return { links, networks, services: [...dns].map((address) => ({ type: "dns", address })) };
}

/** meta_data.json, as Nova's InstanceMetadata writes it for `openstack/latest`. */
export function metaData(instance: InstanceSpec, guest: GuestSpec): unknown {
  const keys = guest.keyName ? [{ name: guest.keyName, type: "ssh", data: guest.publicKey }] : [];
  return {
    uuid: instance.id,
    name: instance.name,
    hostname: guest.hostname,
    availability_zone: guest.availabilityZone || "nova",
    project_id: instance.projectId,
    launch_index: 0,
    meta: { ...instance.metadata },
    ...(keys.length ? { public_keys: { [guest.keyName]: guest.publicKey }, keys } : {}),
    devices: [],
  };
}

/** Every file of the drive, by its path on it. */
export function configDriveFiles(instance: InstanceSpec, guest: GuestSpec): Map<string, Buffer> {
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  const files = new Map<string, Buffer>([
    ["openstack/latest/meta_data.json", json(metaData(instance, guest))],
    ["openstack/latest/network_data.json", json(networkData(instance.ports ?? []))],
    ["openstack/latest/vendor_data.json", json({})],
    ["openstack/latest/vendor_data2.json", json({})],
  ]);
  if (guest.userData.length) files.set("openstack/latest/user_data", Buffer.from(guest.userData));
  return files;
}
