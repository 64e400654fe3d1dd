/** `novamesh network|subnet|port|security-group …`: tenant networks and what guards them. */
import type { Command } from "commander";
import { NetworkServiceClient, Segmentation } from "../gen/novamesh/network/v1/network.js";
import { Direction, SecurityGroupServiceClient } from "../gen/novamesh/network/v1/security_group.js";
import { UsageError } from "./output.js";
import { callCommand, enumArg, integer, listCommand, many } from "./session.js";

const allProjects = (c: Command) => c.option("--all-projects", "every project's (admins)");

export function addNetworks(root: Command): void {
  const network = root.command("network").description("networks");
  listCommand(network, "list", "the networks the project may use", {
    client: NetworkServiceClient,
    method: "listNetworks",
    options: allProjects,
    request: (_a, o: { allProjects?: boolean }) => ({ allProjects: o.allProjects ?? false }),
    field: "networks",
    columns: ["id", "name", "segmentation", "shared", "subnet_ids"],
  });
  callCommand(network, "show <id>", "one network", { client: NetworkServiceClient, method: "getNetwork", request: ([id]) => ({ id }), field: "network" });
  callCommand(network, "create <name>", "a new network (VXLAN by default; flat on an operator's bridge: admins)", {
    client: NetworkServiceClient,
    method: "createNetwork",
    options: (c) =>
      c
        .option("--segmentation <kind>", "vxlan or flat", "vxlan")
        .option("--physical-network <bridge>", "flat: the hosts' bridge")
        .option("--mtu <bytes>", "its MTU")
        .option("--shared", "usable by every project (admins)")
        .option("--disable-port-security", "its ports get no security groups by default")
        .option("--project <id>", "the project it belongs to (admins)"),
    request: ([name], o: { segmentation: string; physicalNetwork?: string; mtu?: string; shared?: boolean; disablePortSecurity?: boolean; project?: string }) => ({
      name,
      segmentation: enumArg(Segmentation, "SEGMENTATION_", "--segmentation", o.segmentation),
      physicalNetwork: o.physicalNetwork ?? "",
      mtu: integer("--mtu", o.mtu) ?? 0,
      shared: o.shared ?? false,
      disablePortSecurity: o.disablePortSecurity ?? false,
      projectId: o.project ?? "",
    }),
    field: "network",
  });
  callCommand(network, "delete <id>", "delete a network (no ports of servers may be on it)", { client: NetworkServiceClient, method: "deleteNetwork", request: ([id]) => ({ id }) });

  const subnet = root.command("subnet").description("subnets: address ranges of a network");
  listCommand(subnet, "list", "the subnets", {
    client: NetworkServiceClient,
    method: "listSubnets",
    options: (c) => c.option("--network <id>", "of one network"),
    request: (_a, o: { network?: string }) => ({ networkId: o.network ?? "" }),
    field: "subnets",
    columns: ["id", "name", "network_id", "cidr", "gateway_ip", "enable_dhcp"],
  });
  callCommand(subnet, "show <id>", "one subnet", { client: NetworkServiceClient, method: "getSubnet", request: ([id]) => ({ id }), field: "subnet" });
  callCommand(subnet, "create <name>", "a new subnet on a network", {
    client: NetworkServiceClient,
    method: "createSubnet",
    options: (c) =>
      c
        .requiredOption("--network <id>", "the network")
        .requiredOption("--cidr <cidr>", "its range, like 10.0.0.0/24")
        .option("--gateway <address>", "its gateway (default: the first address)")
        .option("--no-gateway", "no gateway")
        .option("--pool <start-end>", "an allocation pool (repeat)", many, [] as string[])
        .option("--dns <address>", "a name server for DHCP (repeat)", many, [] as string[])
        .option("--no-dhcp", "no DHCP on it"),
    request: ([name], o: { network: string; cidr: string; gateway: string | false; pool: string[]; dns: string[]; dhcp: boolean }) => ({
      subnet: {
        name,
        networkId: o.network,
        cidr: o.cidr,
        gatewayIp: typeof o.gateway === "string" ? o.gateway : "",
        noGateway: o.gateway === false,
        allocationPools: o.pool.map((p) => {
          const [start, end, ...rest] = p.split("-");
          if (!start || !end || rest.length) throw new UsageError(`--pool ${p}: give start-end`);
          return { start, end };
        }),
        dnsNameservers: o.dns,
        hostRoutes: [],
        disableDhcp: !o.dhcp,
      },
    }),
    field: "subnet",
  });
  callCommand(subnet, "delete <id>", "delete a subnet", { client: NetworkServiceClient, method: "deleteSubnet", request: ([id]) => ({ id }) });

  const port = root.command("port").description("ports: a MAC and addresses on a network");
  listCommand(port, "list", "the ports", {
    client: NetworkServiceClient,
    method: "listPorts",
    options: (c) => allProjects(c.option("--network <id>", "on one network").option("--server <id>", "of one server")),
    request: (_a, o: { network?: string; server?: string; allProjects?: boolean }) => ({ networkId: o.network ?? "", deviceId: o.server ?? "", allProjects: o.allProjects ?? false }),
    field: "ports",
    columns: ["id", "name", "mac_address", "fixed_ips", "device_id", "status"],
  });
  callCommand(port, "show <id>", "one port", { client: NetworkServiceClient, method: "getPort", request: ([id]) => ({ id }), field: "port" });
  callCommand(port, "create <name>", "a new port, to give a server", {
    client: NetworkServiceClient,
    method: "createPort",
    options: (c) =>
      c
        .requiredOption("--network <id>", "its network")
        .option("--fixed-ip <address>", "an address it gets (repeat)", many, [] as string[])
        .option("--mac-address <mac>", "its MAC")
        .option("--security-group <id>", "a security group (repeat; default: the project's default)", many, [] as string[])
        .option("--disable-port-security", "no security groups, no anti-spoofing"),
    request: ([name], o: { network: string; fixedIp: string[]; macAddress?: string; securityGroup: string[]; disablePortSecurity?: boolean }) => ({
      name,
      networkId: o.network,
      fixedIps: o.fixedIp.map((ipAddress) => ({ subnetId: "", ipAddress })),
      macAddress: o.macAddress ?? "",
      securityGroupIds: o.securityGroup,
      disablePortSecurity: o.disablePortSecurity ?? false,
    }),
    field: "port",
  });
  callCommand(port, "delete <id>", "delete a port that no server uses", { client: NetworkServiceClient, method: "deletePort", request: ([id]) => ({ id }) });

  const group = root.command("security-group").description("security groups: the traffic a port lets in and out");
  listCommand(group, "list", "the security groups", {
    client: SecurityGroupServiceClient,
    method: "listSecurityGroups",
    options: allProjects,
    request: (_a, o: { allProjects?: boolean }) => ({ allProjects: o.allProjects ?? false }),
    field: "security_groups",
    columns: ["id", "name", "description"],
  });
  callCommand(group, "show <id>", "one security group and its rules", {
    client: SecurityGroupServiceClient,
    method: "getSecurityGroup",
    request: ([id]) => ({ id }),
    field: "security_group",
  });
  callCommand(group, "create <name>", "a new security group (it lets traffic out, nothing in)", {
    client: SecurityGroupServiceClient,
    method: "createSecurityGroup",
    options: (c) => c.option("--description <text>", "what it is for"),
    request: ([name], o: { description?: string }) => ({ name, description: o.description ?? "" }),
    field: "security_group",
  });
  callCommand(group, "delete <id>", "delete a security group no port uses", { client: SecurityGroupServiceClient, method: "deleteSecurityGroup", request: ([id]) => ({ id }) });
  callCommand(group, "rule-create <group>", "add a rule", {
    client: SecurityGroupServiceClient,
    method: "createSecurityGroupRule",
    options: (c) =>
      c
        .option("--egress", "for traffic out (default: in)")
        .option("--protocol <name>", "tcp, udp, icmp (default: any)")
        .option("--port <n[:m]>", "tcp/udp: a port or range")
        .option("--remote-ip <cidr>", "from (or to) this range")
        .option("--remote-group <id>", "from (or to) the ports of this group")
        .option("--description <text>", "what it is for"),
    request: ([securityGroupId], o: { egress?: boolean; protocol?: string; port?: string; remoteIp?: string; remoteGroup?: string; description?: string }) => {
      const [min, max, ...rest] = (o.port ?? "").split(":");
      if (rest.length) throw new UsageError(`--port ${o.port}: give a port or first:last`);
      return {
        rule: {
          securityGroupId,
          direction: o.egress ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS,
          protocol: o.protocol ?? "",
          portRangeMin: o.port ? integer("--port", min, 0, 65535) : undefined,
          portRangeMax: max ? integer("--port", max, 0, 65535) : undefined,
          remoteIpPrefix: o.remoteIp ?? "",
          remoteGroupId: o.remoteGroup ?? "",
          description: o.description ?? "",
        },
      };
    },
    field: "rule",
  });
  callCommand(group, "rule-delete <rule>", "remove a rule", { client: SecurityGroupServiceClient, method: "deleteSecurityGroupRule", request: ([id]) => ({ id }) });
}
