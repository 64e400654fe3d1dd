/**
 * `novamesh host|hypervisor|aggregate|availability-zone|token|placement|
 * operation|audit …`: what operators look at and change, and the
 * operations every mutating call returns.
 */
import type { Command } from "commander";
import { AggregateServiceClient } from "../gen/novamesh/compute/v1/aggregate.js";
import { AuditServiceClient } from "../gen/novamesh/compute/v1/audit.js";
import { HostServiceClient } from "../gen/novamesh/compute/v1/host.js";
import { IdentityServiceClient, Role, type CreateTokenResponse } from "../gen/novamesh/compute/v1/identity.js";
import { OperationServiceClient, OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { SchedulerServiceClient } from "../gen/novamesh/compute/v1/scheduler.js";
import { unary } from "./connection.js";
import { printList, printOne, type Row } from "./output.js";
import { callCommand, enumArg, followOperation, integer, listCommand, many, out, pairs, session } from "./session.js";
import { viewOf } from "./view.js";

const SERVICE_COLUMNS = ["host", "zone", "status", "state", "disabled_reason", "last_seen_time"];
const HYPERVISOR_COLUMNS = ["hostname", "state", "status", "vcpus_used", "vcpus", "memory_mb_used", "memory_mb", "local_gb_used", "local_gb", "running_vms"];
const OPERATION_COLUMNS = ["name", "action", "server_id", "state", "progress_percent", "create_time"];

export function addAdmin(root: Command): void {
  const host = root.command("host").description("compute hosts: their service state (admins)");
  listCommand(host, "list", "the hosts and whether they are up and enabled", {
    client: HostServiceClient,
    method: "listServices",
    field: "services",
    columns: SERVICE_COLUMNS,
  });
  callCommand(host, "enable <host>", "let the scheduler place servers on a host again", { client: HostServiceClient, method: "enableService", request: ([h]) => ({ host: h }), field: "service" });
  callCommand(host, "disable <host>", "place no new servers on a host (its servers stay)", {
    client: HostServiceClient,
    method: "disableService",
    options: (c) => c.option("--reason <text>", "why (shown in host list)"),
    request: ([h], o: { reason?: string }) => ({ host: h, reason: o.reason ?? "" }),
    field: "service",
  });

  const hypervisor = root.command("hypervisor").description("what each host has and uses (admins)");
  listCommand(hypervisor, "list", "every host's capacity and use", { client: HostServiceClient, method: "listHypervisors", field: "hypervisors", columns: HYPERVISOR_COLUMNS });
  hypervisor
    .command("show <host>")
    .description("one host's capacity, use, allocation ratios and reservations")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const s = session(cmd);
      const hosts = s.client(HostServiceClient);
      const found = (viewOf(hosts, "listHypervisors", await unary(s.c, hosts, "listHypervisors", { hostname: name })).hypervisors ?? []) as Row[];
      const one = found.find((h) => h.hostname === name);
      if (!one) throw Object.assign(new Error(`no hypervisor ${name}`), { exitCode: 3 });
      out(printOne(one, s.output));
    });

  const aggregate = root.command("aggregate").description("host aggregates and their metadata (admins)");
  listCommand(aggregate, "list", "the aggregates", { client: AggregateServiceClient, method: "listAggregates", field: "aggregates", columns: ["id", "name", "hosts", "metadata"] });
  callCommand(aggregate, "show <id>", "one aggregate", { client: AggregateServiceClient, method: "getAggregate", request: ([id]) => ({ id }), field: "aggregate" });
  callCommand(aggregate, "create <name>", "a new aggregate; an availability_zone property makes it a zone", {
    client: AggregateServiceClient,
    method: "createAggregate",
    options: (c) => c.option("--zone <name>", "the availability zone its hosts are in").option("--property <key=value>", "metadata (repeat)", many, [] as string[]),
    request: ([name], o: { zone?: string; property: string[] }) => ({ name, metadata: { ...pairs("--property", o.property), ...(o.zone ? { availability_zone: o.zone } : {}) } }),
    field: "aggregate",
  });
  callCommand(aggregate, "delete <id>", "delete an aggregate (it must hold no hosts)", { client: AggregateServiceClient, method: "deleteAggregate", request: ([id]) => ({ id }) });
  callCommand(aggregate, "add-host <id> <host>", "put a host in an aggregate", { client: AggregateServiceClient, method: "addAggregateHost", request: ([id, h]) => ({ id, host: h }), field: "aggregate" });
  callCommand(aggregate, "remove-host <id> <host>", "take a host out of an aggregate", {
    client: AggregateServiceClient,
    method: "removeAggregateHost",
    request: ([id, h]) => ({ id, host: h }),
    field: "aggregate",
  });
  callCommand(aggregate, "set <id> <key=value...>", "set metadata (an empty value removes the key)", {
    client: AggregateServiceClient,
    method: "setAggregateMetadata",
    request: ([id, ...items]) => ({ id, metadata: pairs("metadata", items) }),
    field: "aggregate",
  });
  root
    .command("availability-zone")
    .description("availability zones")
    .command("list")
    .description("the zones and their hosts")
    .action(async (_o: unknown, cmd: Command) => {
      const s = session(cmd);
      const aggregates = s.client(AggregateServiceClient);
      const zones = (viewOf(aggregates, "listAvailabilityZones", await unary(s.c, aggregates, "listAvailabilityZones", {})).zones ?? []) as Row[];
      out(printList(zones, s.output, ["name", "hosts"]));
    });

  const token = root.command("token").description("API tokens (admins)");
  token
    .command("create")
    .description("a new token; its secret is printed once")
    .requiredOption("--role <role>", "admin, member or agent")
    .option("--project <id>", "the project a member token acts in")
    .option("--host <name>", "the host an agent token speaks for")
    .option("--description <text>", "what it is for")
    .option("--ttl <seconds>", "how long it lives (default: the controller's)")
    .action(async (o: { role: string; project?: string; host?: string; description?: string; ttl?: string }, cmd: Command) => {
      const s = session(cmd);
      const identity = s.client(IdentityServiceClient);
      const ttl = integer("--ttl", o.ttl);
      const res = await unary<CreateTokenResponse>(s.c, identity, "createToken", {
        projectId: o.project ?? "",
        role: enumArg(Role, "ROLE_", "--role", o.role),
        description: o.description ?? "",
        host: o.host ?? "",
        expiration: ttl === undefined ? undefined : { $case: "ttl", ttl: { seconds: ttl, nanos: 0 } },
      });
      out(printOne({ ...(viewOf(identity, "createToken", res).token as Row), secret: res.secret }, s.output));
    });
  listCommand(token, "list", "the tokens (their secrets are never shown again)", {
    client: IdentityServiceClient,
    method: "listTokens",
    options: (c) => c.option("--project <id>", "of one project"),
    request: (_a, o: { project?: string }) => ({ projectId: o.project ?? "" }),
    field: "tokens",
    columns: ["id", "role", "project_id", "host", "description", "expire_time"],
  });
  callCommand(token, "delete <id>", "revoke a token at once", { client: IdentityServiceClient, method: "deleteToken", request: ([id]) => ({ id }) });

  root
    .command("placement")
    .description("the scheduler")
    .command("explain")
    .description("where a server of this flavor would go, and why other hosts would not (admins)")
    .requiredOption("--flavor <id>", "the flavor")
    .requiredOption("--image <id>", "the image")
    .option("--availability-zone <zone>", "the zone")
    .option("--group <id>", "a server group it would join")
    .action(async (o: { flavor: string; image: string; availabilityZone?: string; group?: string }, cmd: Command) => {
      const s = session(cmd);
      const scheduler = s.client(SchedulerServiceClient);
      const res = await unary(s.c, scheduler, "explainPlacement", {
        flavorId: o.flavor,
        imageId: o.image,
        availabilityZone: o.availabilityZone ?? "",
        schedulerHints: o.group ? { group: o.group, sameHost: [], differentHost: [] } : undefined,
      });
      const view = viewOf(scheduler, "explainPlacement", res);
      const hosts = (view.hosts as Row[]).map((h) => ({
        ...h,
        failed: ((h.filters ?? []) as Row[]).filter((f) => !f.pass).map((f) => `${f.filter}: ${f.reason}`),
      }));
      if (s.output.format !== "table") {
        out(printOne({ ...view, hosts }, s.output));
        return;
      }
      process.stderr.write(`chosen: ${view.chosen_host || "none"} of ${view.hosts_considered} hosts (${view.algorithm}); rejections: ${JSON.stringify(view.rejections)}\n`);
      out(printList(hosts, s.output, ["rank", "host", "passed", "score", "failed"]));
    });

  const operation = root.command("operation").description("what mutating calls started, and how far they got");
  listCommand(operation, "list", "operations, newest first", {
    client: OperationServiceClient,
    method: "listOperations",
    options: (c) =>
      c
        .option("--server <id>", "of one server")
        .option("--volume <id>", "of one volume")
        .option("--state <state>", "pending, running, succeeded, failed or cancelled")
        .option("--all-projects", "every project's (admins)"),
    request: (_a, o: { server?: string; volume?: string; state?: string; allProjects?: boolean }) => ({
      serverId: o.server ?? "",
      volumeId: o.volume ?? "",
      state: o.state ? enumArg(OperationState, "OPERATION_STATE_", "--state", o.state) : 0,
      allProjects: o.allProjects ?? false,
      pageSize: 1000,
    }),
    field: "operations",
    columns: OPERATION_COLUMNS,
  });
  callCommand(operation, "show <name>", "one operation", { client: OperationServiceClient, method: "getOperation", request: ([name]) => ({ name }), field: "operation" });
  callCommand(operation, "cancel <name>", "cancel an operation that has not gone past the point of no return", {
    client: OperationServiceClient,
    method: "cancelOperation",
    request: ([name]) => ({ name }),
    field: "operation",
  });
  operation
    .command("wait <name>")
    .description("follow an operation until it is done, showing its progress; exits 1 if it failed")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const s = session(cmd);
      out(printOne((await followOperation(s, name)).operation, s.output));
    });

  listCommand(root.command("audit").description("who called what (admins)"), "list", "the audit log, newest first", {
    client: AuditServiceClient,
    method: "listAuditRecords",
    // --token-id, not --token: that is the option every command takes for the caller's own token.
    options: (c) => c.option("--project <id>", "calls in one project").option("--token-id <id>", "calls made with one token").option("--method <name>", "one method, as /package.Service/Method"),
    request: (_a, o: { project?: string; tokenId?: string; method?: string }) => ({ projectId: o.project ?? "", tokenId: o.tokenId ?? "", method: o.method ?? "", pageSize: 1000 }),
    field: "records",
    columns: ["time", "method", "target", "project_id", "token_id", "code", "reason"],
  });
}
