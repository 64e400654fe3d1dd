/** `novamesh flavor|keypair|quota|server-group …`: what a server is made with, and a project's limits. */
import { existsSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { FlavorServiceClient } from "../gen/novamesh/compute/v1/flavor.js";
import { KeypairServiceClient, type CreateKeypairResponse } from "../gen/novamesh/compute/v1/keypair.js";
import { QuotaServiceClient } from "../gen/novamesh/compute/v1/quota.js";
import { ServerGroupPolicy, ServerGroupServiceClient } from "../gen/novamesh/compute/v1/server_group.js";
import { unary } from "./connection.js";
import { UsageError, printOne, readFileArg, type Row } from "./output.js";
import { callCommand, enumArg, integer, limits, listCommand, many, out, pairs, session } from "./session.js";
import { viewOf } from "./view.js";

const LIMIT_COLUMNS = ["resource", "limit", "in_use", "reserved", "source"];

export function addCompute(root: Command): void {
  const flavor = root.command("flavor").description("flavors: the sizes servers come in");
  listCommand(flavor, "list", "the flavors", { client: FlavorServiceClient, method: "listFlavors", field: "flavors", columns: ["id", "name", "vcpus", "ram_mb", "disk_gb"] });
  callCommand(flavor, "show <id>", "one flavor", { client: FlavorServiceClient, method: "getFlavor", request: ([id]) => ({ id }), field: "flavor" });
  callCommand(flavor, "create <name>", "a new flavor (admins)", {
    client: FlavorServiceClient,
    method: "createFlavor",
    options: (c) =>
      c
        .requiredOption("--vcpus <n>", "virtual CPUs")
        .requiredOption("--ram <mb>", "memory, MiB")
        .option("--disk <gb>", "root disk, GiB (0: the image's size)", "0")
        .option("--id <id>", "its id (default: the name)")
        .option("--description <text>", "what it is for")
        .option("--property <key=value>", "an extra spec (repeat)", many, [] as string[]),
    request: ([name], o: { vcpus: string; ram: string; disk: string; id?: string; description?: string; property: string[] }) => ({
      flavor: {
        id: o.id ?? name,
        name,
        vcpus: integer("--vcpus", o.vcpus),
        ramMb: integer("--ram", o.ram),
        diskGb: integer("--disk", o.disk, 0),
        description: o.description ?? "",
        extraSpecs: pairs("--property", o.property),
      },
    }),
    field: "flavor",
  });
  callCommand(flavor, "delete <id>", "delete a flavor (admins; servers made with it keep their copy)", { client: FlavorServiceClient, method: "deleteFlavor", request: ([id]) => ({ id }) });

  const keypair = root.command("keypair").description("SSH key pairs of the project");
  listCommand(keypair, "list", "the project's key pairs", { client: KeypairServiceClient, method: "listKeypairs", field: "keypairs", columns: ["name", "type", "fingerprint"] });
  callCommand(keypair, "show <name>", "one key pair", { client: KeypairServiceClient, method: "getKeypair", request: ([name]) => ({ name }), field: "keypair" });
  keypair
    .command("create <name>")
    .description("import a public key (--public-key FILE) or make a key pair, its private key written to --private-key FILE")
    .option("--public-key <file>", "the public key to import (OpenSSH's form, as in ~/.ssh/id_ed25519.pub)")
    .option("--private-key <file>", "where to write a made key pair's private key (mode 600; it is shown only now)")
    .action(async (keyName: string, o: { publicKey?: string; privateKey?: string }, cmd: Command) => {
      if (!o.publicKey === !o.privateKey) throw new UsageError("give --public-key FILE to import a key, or --private-key FILE to make one");
      if (o.privateKey && existsSync(o.privateKey)) throw new UsageError(`--private-key ${o.privateKey} exists: a new private key is not written over another`);
      const s = session(cmd);
      const keypairs = s.client(KeypairServiceClient);
      const publicKey = o.publicKey ? readFileArg("--public-key", o.publicKey).toString("utf8") : "";
      const res = await unary<CreateKeypairResponse>(s.c, keypairs, "createKeypair", { name: keyName, publicKey });
      if (o.privateKey) writeFileSync(o.privateKey, res.privateKey, { mode: 0o600, flag: "wx" });
      const view = viewOf(keypairs, "createKeypair", { ...res, privateKey: "" });
      out(printOne(view.keypair as Row, s.output));
    });
  callCommand(keypair, "delete <name>", "delete a key pair (servers made with it keep their copy)", { client: KeypairServiceClient, method: "deleteKeypair", request: ([name]) => ({ name }) });

  const quota = root.command("quota").description("quotas: limits per project");
  listCommand(quota, "show [project]", "a project's limits and usage (default: the caller's)", {
    client: QuotaServiceClient,
    method: "getLimits",
    request: ([projectId]) => ({ projectId: projectId ?? "" }),
    field: "limits",
    columns: LIMIT_COLUMNS,
  });
  callCommand(quota, "set <project> <resource=limit...>", "set a project's limits (admins; -1: no limit)", {
    client: QuotaServiceClient,
    method: "setProjectLimits",
    request: ([projectId, ...items]) => ({ projectId, limits: limits("limit", items) }),
  });
  callCommand(quota, "reset <project> [resource...]", "a project's limits back to the defaults (admins; all, or those named)", {
    client: QuotaServiceClient,
    method: "resetProjectLimits",
    request: ([projectId, ...resources]) => ({ projectId, resources }),
  });
  listCommand(quota, "defaults", "the limits of projects without their own", { client: QuotaServiceClient, method: "getDefaultLimits", field: "limits", columns: ["resource", "limit"] });
  callCommand(quota, "set-defaults <resource=limit...>", "set the default limits (admins)", {
    client: QuotaServiceClient,
    method: "setDefaultLimits",
    request: (items) => ({ limits: limits("limit", items) }),
  });

  const group = root.command("server-group").description("server groups: affinity and anti-affinity");
  listCommand(group, "list", "the project's server groups", {
    client: ServerGroupServiceClient,
    method: "listServerGroups",
    options: (c) => c.option("--all-projects", "every project's (admins)"),
    request: (_a, o: { allProjects?: boolean }) => ({ allProjects: o.allProjects ?? false }),
    field: "server_groups",
    columns: ["id", "name", "policy", "members"],
  });
  callCommand(group, "show <id>", "one server group", { client: ServerGroupServiceClient, method: "getServerGroup", request: ([id]) => ({ id }), field: "server_group" });
  callCommand(group, "create <name>", "a new server group", {
    client: ServerGroupServiceClient,
    method: "createServerGroup",
    options: (c) =>
      c
        .requiredOption("--policy <policy>", "affinity, anti-affinity or soft-affinity")
        .option("--max-server-per-host <n>", "anti-affinity: how many members one host may hold (default 1)"),
    request: ([name], o: { policy: string; maxServerPerHost?: string }) => ({
      serverGroup: { name, policy: enumArg(ServerGroupPolicy, "SERVER_GROUP_POLICY_", "--policy", o.policy), maxServerPerHost: integer("--max-server-per-host", o.maxServerPerHost) ?? 0, members: [] },
    }),
    field: "server_group",
  });
  callCommand(group, "delete <id>", "delete a server group", { client: ServerGroupServiceClient, method: "deleteServerGroup", request: ([id]) => ({ id }) });
}
