/** NetworkService: networks, subnets and ports (see proto/novamesh/network/v1/network.proto). */
import {
  Segmentation as PbSegmentation,
  type Network as PbNetwork,
  type NetworkServiceServer,
  type Port as PbPort,
  type Subnet as PbSubnet,
} from "../../gen/novamesh/network/v1/network.js";
import type { Network, Port, Subnet } from "../domain/network.js";
import { isUnicastMac } from "../domain/network.js";
import { defaultPools, formatCidr, formatIpv4, overlaps, parseCidr, parseIpv4, type Range } from "../domain/ipv4.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import type { Queryable } from "../store/db.js";
import { DEADLOCK_RETRIES, withTx } from "../store/db.js";
import { hostsOf } from "../store/instances.js";
import { createNetwork, createSubnet, deleteNetwork, deleteSubnet, getNetwork, getSubnet, listNetworks, subnetsOf } from "../store/networks.js";
import { createPort, deletePort, getPort, listPorts, updatePort } from "../store/ports.js";
import { checkQuota } from "../conductor/quota.js";
import { ensureDefaultGroup, getSecurityGroup } from "../store/security-groups.js";
import { fromEnum, toEnum } from "./convert.js";
import type { CallContext, RpcDeps } from "./rpc.js";
import { isAdmin, unary } from "./rpc.js";
import { mayUseNetwork } from "./server-networks.js";
import * as v from "./validate.js";

/** Default MTUs: a VXLAN header takes 50 bytes of a 1500-byte underlay. */
const DEFAULT_MTU = { flat: 1500, vxlan: 1450 } as const;

function networkToProto(n: Network, admin: boolean): PbNetwork {
  return {
    id: n.id,
    name: n.name,
    projectId: n.projectId,
    shared: n.shared,
    segmentation: toEnum(PbSegmentation, "SEGMENTATION_", n.segmentation),
    physicalNetwork: admin ? n.physicalNetwork : "",
    segmentationId: admin ? (n.vni ?? 0) : 0,
    mtu: n.mtu,
    portSecurityEnabled: n.portSecurity,
    subnetIds: [...n.subnetIds],
    createTime: n.createdAt,
  };
}

function subnetToProto(s: Subnet): PbSubnet {
  return {
    id: s.id,
    networkId: s.networkId,
    projectId: s.projectId,
    name: s.name,
    cidr: s.cidr,
    gatewayIp: s.gatewayIp ?? "",
    noGateway: s.gatewayIp === null,
    allocationPools: s.allocationPools.map((p) => ({ ...p })),
    dnsNameservers: [...s.dnsNameservers],
    hostRoutes: s.hostRoutes.map((r) => ({ ...r })),
    enableDhcp: s.enableDhcp,
    disableDhcp: !s.enableDhcp,
    createTime: s.createdAt,
  };
}

function portToProto(p: Port, admin: boolean, bindingHost: string | null): PbPort {
  return {
    id: p.id,
    name: p.name,
    networkId: p.networkId,
    projectId: p.projectId,
    macAddress: p.macAddress,
    fixedIps: p.fixedIps.map((ip) => ({ subnetId: ip.subnetId, ipAddress: ip.ipAddress })),
    deviceId: p.deviceId ?? "",
    deviceOwner: p.deviceOwner,
    securityGroupIds: [...p.securityGroupIds],
    portSecurityEnabled: p.portSecurity,
    status: bindingHost ? "ACTIVE" : "DOWN",
    bindingHost: admin ? (bindingHost ?? "") : "",
    createTime: p.createdAt,
  };
}

/** The hosts ports are plugged on, in their order: a DHCP port's own, or its server's (one query for them all). */
async function bindingHostsOf(q: Queryable, ports: readonly Port[]): Promise<(string | null)[]> {
  const servers = await hostsOf(q, [...new Set(ports.filter((p) => !p.dhcpHost && p.deviceId).map((p) => p.deviceId!))]);
  return ports.map((p) => p.dhcpHost || (p.deviceId ? (servers.get(p.deviceId) ?? null) : null));
}

/** An IPv4 address field, or INVALID_ARGUMENT naming it. */
function ipv4(field: string, s: string): number {
  const n = parseIpv4(s);
  if (n === null) throw invalidArgument(field, `${JSON.stringify(s.slice(0, 64))} is not an IPv4 address`);
  return n;
}

/** Security groups a port of `who`'s may use: its own project's (admins: any). */
async function checkGroups(q: Queryable, projectId: string, ids: readonly string[], field: string): Promise<string[]> {
  const out: string[] = [];
  for (const [i, id] of ids.entries()) {
    const g = await getSecurityGroup(q, v.uuid(`${field}[${i}]`, id));
    // A port takes groups of its own project only (as in Neutron), whoever asks.
    if (!g || g.projectId !== projectId) throw notFound("security_group", id);
    if (!out.includes(g.id)) out.push(g.id);
  }
  return out;
}

export function networkService(deps: RpcDeps, o: { vniMin: number; vniMax: number }): NetworkServiceServer {
  const { pool } = deps;
  /** A network the caller may see (its own, shared; admins any), or NOT_FOUND. */
  const visibleNetwork = async (ctx: CallContext, id: string, field = "id") => {
    const n = await getNetwork(pool, v.uuid(field, id));
    if (!n || !mayUseNetwork(ctx.principal, n)) throw notFound("network", id);
    return n;
  };
  /** A network the caller may change: its own (admins any). */
  const ownNetwork = async (ctx: CallContext, id: string, field = "id") => {
    const n = await visibleNetwork(ctx, id, field);
    if (!isAdmin(ctx) && n.projectId !== ctx.principal.projectId) throw permissionDenied(`network ${id} is shared by another project; only an admin changes it`);
    return n;
  };
  const visibleSubnet = async (ctx: CallContext, id: string) => {
    const s = await getSubnet(pool, v.uuid("id", id));
    if (!s) throw notFound("subnet", id);
    const n = await getNetwork(pool, s.networkId);
    if (!n || !mayUseNetwork(ctx.principal, n)) throw notFound("subnet", id);
    return { subnet: s, network: n };
  };
  const visiblePort = async (ctx: CallContext, id: string) => {
    const p = await getPort(pool, v.uuid("id", id));
    if (!p || (!isAdmin(ctx) && p.projectId !== ctx.principal.projectId)) throw notFound("port", id);
    return p;
  };
  const portAnswer = async (ctx: CallContext, p: Port) => ({ port: portToProto(p, isAdmin(ctx), (await bindingHostsOf(pool, [p]))[0] ?? null) });

  return {
    createNetwork: unary(deps, "CreateNetwork", async (req, ctx) => {
      const name = v.name("name", req.name);
      const admin = isAdmin(ctx);
      if (req.shared && !admin) throw permissionDenied("shared networks need the admin role");
      const seg = req.segmentation === PbSegmentation.SEGMENTATION_UNSPECIFIED ? "vxlan" : fromEnum(PbSegmentation, "SEGMENTATION_", req.segmentation)?.toLowerCase();
      if (seg !== "flat" && seg !== "vxlan") throw invalidArgument("segmentation", "must be SEGMENTATION_FLAT or SEGMENTATION_VXLAN");
      if (seg === "flat" && !admin) throw permissionDenied("flat networks need the admin role");
      let physical = "";
      if (seg === "flat") {
        if (!/^[A-Za-z0-9_.-]{1,15}$/.test(req.physicalNetwork)) throw invalidArgument("physical_network", "must name the hosts' bridge: 1-15 letters, digits, '_', '.' or '-'");
        physical = req.physicalNetwork;
      } else if (req.physicalNetwork) {
        throw invalidArgument("physical_network", "only goes with a flat network");
      }
      const mtu = req.mtu === 0 ? DEFAULT_MTU[seg] : v.intRange("mtu", req.mtu, 68, 9000);
      let projectId = ctx.principal.projectId;
      if (req.projectId) {
        if (!admin) throw permissionDenied("project_id needs the admin role");
        projectId = v.projectId("project_id", req.projectId);
      }
      const n = await createNetwork(
        pool,
        { name, projectId, shared: req.shared, segmentation: seg, physicalNetwork: physical, mtu, portSecurity: !req.disablePortSecurity },
        { min: o.vniMin, max: o.vniMax },
      );
      ctx.log.info({ network: n.id, segmentation: seg, vni: n.vni }, "network created");
      return { network: networkToProto(n, admin) };
    }),

    getNetwork: unary(deps, "GetNetwork", async (req, ctx) => ({ network: networkToProto(await visibleNetwork(ctx, req.id), isAdmin(ctx)) })),

    listNetworks: unary(deps, "ListNetworks", async (req, ctx) => {
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      const nets = await listNetworks(pool, req.allProjects ? undefined : ctx.principal.projectId);
      return { networks: nets.map((n) => networkToProto(n, isAdmin(ctx))) };
    }),

    deleteNetwork: unary(deps, "DeleteNetwork", async (req, ctx) => {
      const n = await ownNetwork(ctx, req.id);
      if (!(await withTx(pool, (conn) => deleteNetwork(conn, n.id)))) throw notFound("network", req.id);
      ctx.log.info({ network: n.id }, "network deleted");
      return {};
    }),

    createSubnet: unary(deps, "CreateSubnet", async (req, ctx) => {
      const s = req.subnet;
      if (!s) throw invalidArgument("subnet", "is required");
      const net = await ownNetwork(ctx, s.networkId, "subnet.network_id");
      const name = v.text("subnet.name", s.name);
      if (!s.cidr) throw invalidArgument("subnet.cidr", "is required");
      const cidr = parseCidr(s.cidr);
      if (!cidr) throw invalidArgument("subnet.cidr", `${JSON.stringify(s.cidr.slice(0, 64))} is not an IPv4 CIDR with its host bits zero (such as 10.0.0.0/24)`);
      if (cidr.prefix > 30) throw invalidArgument("subnet.cidr", "must be /30 or larger: a smaller one has no address to spare");
      let gateway: number | null = null;
      if (s.noGateway) {
        if (s.gatewayIp) throw invalidArgument("subnet.gateway_ip", "must be empty with no_gateway");
      } else {
        gateway = s.gatewayIp ? ipv4("subnet.gateway_ip", s.gatewayIp) : cidr.first + 1;
        if (gateway <= cidr.first || gateway >= cidr.last) throw invalidArgument("subnet.gateway_ip", `${formatIpv4(gateway)} is not a usable address of ${s.cidr}`);
      }
      let pools: Range[];
      if (s.allocationPools.length === 0) {
        pools = defaultPools(cidr, gateway);
      } else {
        pools = s.allocationPools.map((p, i) => {
          const first = ipv4(`subnet.allocation_pools[${i}].start`, p.start);
          const last = ipv4(`subnet.allocation_pools[${i}].end`, p.end);
          if (first > last) throw invalidArgument(`subnet.allocation_pools[${i}]`, "start is after end");
          if (first <= cidr.first || last >= cidr.last) throw invalidArgument(`subnet.allocation_pools[${i}]`, `${p.start}-${p.end} is not within the usable addresses of ${s.cidr}`);
          if (gateway !== null && first <= gateway && gateway <= last) throw invalidArgument(`subnet.allocation_pools[${i}]`, `holds the gateway ${formatIpv4(gateway)}`);
          return { first, last };
        });
        pools.forEach((a, i) =>
          pools.forEach((b, j) => {
            if (i < j && overlaps(a, b)) throw invalidArgument(`subnet.allocation_pools[${j}]`, `overlaps allocation_pools[${i}]`);
          }),
        );
      }
      if (s.dnsNameservers.length > 5) throw invalidArgument("subnet.dns_nameservers", "at most 5");
      s.dnsNameservers.forEach((d, i) => ipv4(`subnet.dns_nameservers[${i}]`, d));
      if (s.hostRoutes.length > 20) throw invalidArgument("subnet.host_routes", "at most 20");
      const hostRoutes = s.hostRoutes.map((r, i) => {
        const dest = parseCidr(r.destination);
        if (!dest) throw invalidArgument(`subnet.host_routes[${i}].destination`, "must be an IPv4 CIDR with its host bits zero");
        const hop = ipv4(`subnet.host_routes[${i}].nexthop`, r.nexthop);
        if (hop <= cidr.first || hop >= cidr.last) throw invalidArgument(`subnet.host_routes[${i}].nexthop`, `must be an address of ${s.cidr}`);
        return { destination: formatCidr(dest), nexthop: r.nexthop };
      });
      const subnet = await withTx(pool, (conn) =>
        createSubnet(conn, {
          networkId: net.id,
          projectId: net.projectId,
          name,
          cidr: formatCidr(cidr),
          first: cidr.first,
          last: cidr.last,
          gatewayIp: gateway === null ? null : formatIpv4(gateway),
          allocationPools: pools.map((p) => ({ start: formatIpv4(p.first), end: formatIpv4(p.last) })),
          dnsNameservers: [...s.dnsNameservers],
          hostRoutes,
          enableDhcp: !s.disableDhcp,
        }),
      );
      ctx.log.info({ subnet: subnet.id, network: net.id, cidr: subnet.cidr }, "subnet created");
      return { subnet: subnetToProto(subnet) };
    }),

    getSubnet: unary(deps, "GetSubnet", async (req, ctx) => ({ subnet: subnetToProto((await visibleSubnet(ctx, req.id)).subnet) })),

    listSubnets: unary(deps, "ListSubnets", async (req, ctx) => {
      const ids = req.networkId ? [(await visibleNetwork(ctx, req.networkId, "network_id")).id] : (await listNetworks(pool, isAdmin(ctx) ? undefined : ctx.principal.projectId)).map((n) => n.id);
      return { subnets: (await subnetsOf(pool, ids)).map(subnetToProto) };
    }),

    deleteSubnet: unary(deps, "DeleteSubnet", async (req, ctx) => {
      const { subnet } = await visibleSubnet(ctx, req.id);
      await ownNetwork(ctx, subnet.networkId);
      if (!(await withTx(pool, (conn) => deleteSubnet(conn, subnet.id)))) throw notFound("subnet", req.id);
      return {};
    }),

    createPort: unary(deps, "CreatePort", async (req, ctx) => {
      const net = await visibleNetwork(ctx, req.networkId, "network_id");
      const name = v.text("name", req.name);
      let mac: string | undefined;
      if (req.macAddress) {
        mac = req.macAddress.toLowerCase();
        if (!isUnicastMac(mac)) throw invalidArgument("mac_address", `${JSON.stringify(req.macAddress.slice(0, 32))} is not a unicast MAC address (six hex octets, the first even)`);
      }
      if (req.fixedIps.length > 8) throw invalidArgument("fixed_ips", "at most 8");
      const fixedIps = req.fixedIps.map((f, i) => {
        if (!f.subnetId && !f.ipAddress) throw invalidArgument(`fixed_ips[${i}]`, "names neither subnet_id nor ip_address");
        return { subnetId: f.subnetId ? v.uuid(`fixed_ips[${i}].subnet_id`, f.subnetId) : undefined, ipAddress: f.ipAddress || undefined };
      });
      const portSecurity = net.portSecurity && !req.disablePortSecurity;
      if (!portSecurity && req.securityGroupIds.length) throw invalidArgument("security_group_ids", "must be empty without port security");
      const projectId = ctx.principal.projectId;
      const groups = portSecurity
        ? req.securityGroupIds.length
          ? await checkGroups(pool, projectId, req.securityGroupIds, "security_group_ids")
          : [(await ensureDefaultGroup(pool, projectId)).id]
        : [];
      const p = await withTx(
        pool,
        async (conn) => {
          await checkQuota(conn, projectId, { ports: 1 });
          return createPort(conn, { networkId: net.id, projectId, name, macAddress: mac, fixedIps: fixedIps.length ? fixedIps : undefined, securityGroupIds: groups, portSecurity });
        },
        { deadlockRetries: DEADLOCK_RETRIES },
      );
      ctx.log.info({ port: p.id, network: net.id }, "port created");
      return portAnswer(ctx, p);
    }),

    getPort: unary(deps, "GetPort", async (req, ctx) => portAnswer(ctx, await visiblePort(ctx, req.id))),

    listPorts: unary(deps, "ListPorts", async (req, ctx) => {
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      const ports = await listPorts(pool, {
        projectId: req.allProjects ? undefined : ctx.principal.projectId,
        networkId: req.networkId ? v.uuid("network_id", req.networkId) : undefined,
        deviceId: req.deviceId ? v.uuid("device_id", req.deviceId) : undefined,
      });
      const admin = isAdmin(ctx);
      const hosts = await bindingHostsOf(pool, ports);
      return { ports: ports.map((p, i) => portToProto(p, admin, hosts[i] ?? null)) };
    }),

    updatePort: unary(deps, "UpdatePort", async (req, ctx) => {
      const patch = req.port;
      if (!patch) throw invalidArgument("port", "is required");
      const p = await visiblePort(ctx, patch.id);
      const paths = req.updateMask ?? [];
      if (paths.length === 0) throw invalidArgument("update_mask", "names no field");
      const change: { name?: string; securityGroupIds?: string[]; portSecurity?: boolean } = {};
      for (const path of paths) {
        if (path === "name") change.name = v.text("port.name", patch.name);
        else if (path === "port_security_enabled") change.portSecurity = patch.portSecurityEnabled;
        else if (path === "security_group_ids") change.securityGroupIds = await checkGroups(pool, p.projectId, patch.securityGroupIds, "port.security_group_ids");
        else throw invalidArgument("update_mask", `${JSON.stringify(path)} cannot be changed (name, security_group_ids, port_security_enabled can)`);
      }
      if (p.dhcpHost) throw failedPrecondition(`port ${p.id} is a host's DHCP port`, "PORT_IN_USE", { port: p.id });
      const portSecurity = change.portSecurity ?? p.portSecurity;
      const groups = change.securityGroupIds ?? (portSecurity && !p.portSecurity ? [(await ensureDefaultGroup(pool, p.projectId)).id] : undefined);
      if (!portSecurity && (change.securityGroupIds?.length ?? 0) > 0) throw invalidArgument("port.security_group_ids", "must be empty without port security");
      await withTx(pool, (conn) => updatePort(conn, p.id, { ...change, securityGroupIds: portSecurity ? groups : [] }));
      return portAnswer(ctx, (await getPort(pool, p.id))!);
    }),

    deletePort: unary(deps, "DeletePort", async (req, ctx) => {
      const p = await visiblePort(ctx, req.id);
      if (p.deviceId) throw failedPrecondition(`port ${p.id} is attached to server ${p.deviceId}; detach it first`, "PORT_IN_USE", { port: p.id, server: p.deviceId });
      if (p.dhcpHost) throw failedPrecondition(`port ${p.id} is a host's DHCP port; it goes with its network`, "PORT_IN_USE", { port: p.id });
      await withTx(pool, async (conn) => {
        // Re-checked under the row lock: a create may have taken it since.
        const locked = await getPort(conn, p.id, { lock: true });
        if (locked?.deviceId) throw failedPrecondition(`port ${p.id} is attached to server ${locked.deviceId}; detach it first`, "PORT_IN_USE", { port: p.id, server: locked.deviceId });
        await deletePort(conn, p.id);
      });
      return {};
    }),
  };
}
