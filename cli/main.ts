/**
 * `novamesh`: the command line of the API. `novamesh --help` lists the
 * commands; every one takes the connection options (`--url`, `--token`,
 * `--ca`, `--plaintext`, or NOVAMESH_URL, NOVAMESH_TOKEN, NOVAMESH_CA) and
 * the output options (`-f table|json|yaml|value`, `-c COLUMN`).
 *
 * Exit codes: 0 done; 1 the call failed or a waited-for server ended in
 * ERROR; 2 a usage mistake; 3 not found; 130 interrupted while waiting (the
 * operation goes on).
 */
import { existsSync, writeFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import * as grpc from "@grpc/grpc-js";
import { FlavorServiceClient, type ListFlavorsResponse } from "../gen/novamesh/compute/v1/flavor.js";
import { KeypairServiceClient, type CreateKeypairResponse, type Keypair, type ListKeypairsResponse } from "../gen/novamesh/compute/v1/keypair.js";
import { QuotaServiceClient, type GetLimitsResponse } from "../gen/novamesh/compute/v1/quota.js";
import { ServerServiceClient, ServerStatus, TaskState, type CreateServerResponse, type GetServerResponse, type ListServersResponse, type Server } from "../gen/novamesh/compute/v1/server.js";
import { CallError, connection, unary, type Connection, type ConnectionOptions } from "./connection.js";
import { FORMATS, UsageError, printList, printOne, readFileArg, type Format, type OutputOptions, type Row } from "./output.js";
import { addServerActions } from "./server-actions.js";

type Global = ConnectionOptions & { format: Format; column: string[] };

const name = <E extends Record<string, string | number>>(e: E, prefix: string, v: number) => String((e as Record<number, string>)[v] ?? v).replace(prefix, "");

/** A server as the CLI shows it. */
function serverRow(s: Server): Row {
  return {
    id: s.id,
    name: s.name,
    status: name(ServerStatus, "SERVER_STATUS_", s.status),
    task: s.taskState ? name(TaskState, "TASK_STATE_", s.taskState) : "",
    flavor: s.flavor?.name ?? "",
    image: s.imageId,
    host: s.host || s.hostId,
    addresses: s.interfaces.flatMap((i) => i.ipAddresses),
    key_name: s.keyName,
    fault: s.fault ? `${s.fault.code}: ${s.fault.message}` : "",
    created: s.createTime ? s.createTime.toISOString() : "",
  };
}
const SERVER_LIST_COLUMNS = ["id", "name", "status", "task", "flavor", "addresses"];

const out = (text: string) => process.stdout.write(text);

/** Follows a server until its task is done: progress on stderr; Ctrl-C stops following, not the operation. */
async function waitFor(c: Connection, servers: ServerServiceClient, id: string, done: (s: Server) => boolean): Promise<Server> {
  let last = "";
  const interrupted = new Promise<never>((_, reject) =>
    process.once("SIGINT", () => reject(Object.assign(new Error(`stopped waiting; the operation goes on: novamesh server show ${id}`), { exitCode: 130 }))),
  );
  for (;;) {
    const s = (await Promise.race([unary<GetServerResponse>(c, servers, "getServer", { id }), interrupted])).server!;
    const row = serverRow(s);
    const now = `${row.status}${row.task ? ` (${row.task})` : ""}`;
    if (now !== last) process.stderr.write(`${id}: ${now}\n`);
    last = now;
    if (done(s)) return s;
    await Promise.race([new Promise((r) => setTimeout(r, 500)), interrupted]);
  }
}

const settledServer = (s: Server) => !s.taskState && s.status !== ServerStatus.SERVER_STATUS_BUILD;

/** Prints a server; one in ERROR fails the command, its fault's details on stderr. */
function show(s: Server, o: OutputOptions): void {
  out(printOne(serverRow(s), o));
  if (s.status !== ServerStatus.SERVER_STATUS_ERROR) return;
  for (const [k, v] of Object.entries(s.fault?.details ?? {})) process.stderr.write(`  ${k}: ${v}\n`);
  process.exitCode = 1;
}

export function program(): Command {
  const root = new Command("novamesh")
    .description("the novamesh API from the command line")
    .option("--url <address>", "the controller, host:port (NOVAMESH_URL; default 127.0.0.1:8774)")
    .option("--token <secret>", "the bearer token (NOVAMESH_TOKEN)")
    .option("--ca <file>", "the CA that signs the controller's certificate (NOVAMESH_CA; default the system's)")
    .option("--plaintext", "no TLS (a controller started with --plaintext)")
    .addOption(new Option("-f, --format <format>", "output format").choices([...FORMATS]).default("table"))
    .option("-c, --column <name>", "a column to show (repeat for more; default all)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .exitOverride()
    .showHelpAfterError();
  /** A command's connection, output options and clients (the options of the command and of `novamesh` itself). */
  const session = (cmd: Command) => {
    const g = cmd.optsWithGlobals<Global>();
    const c = connection(g);
    const client = <T>(C: new (address: string, credentials: typeof c.credentials) => T) => new C(c.address, c.credentials);
    return {
      c,
      output: { format: g.format, columns: g.column } as OutputOptions,
      servers: client(ServerServiceClient),
      flavors: client(FlavorServiceClient),
      keypairs: client(KeypairServiceClient),
      quotas: client(QuotaServiceClient),
    };
  };

  const server = root.command("server").description("servers");
  server
    .command("list")
    .description("the project's servers (admins: --all-projects)")
    .option("--all-projects", "every project's (admins)")
    .option("--name <text>", "only those whose name contains it")
    .action(async (o: { allProjects?: boolean; name?: string }, cmd: Command) => {
      const { c, servers, output } = session(cmd);
      const res = await unary<ListServersResponse>(c, servers, "listServers", { allProjects: o.allProjects ?? false, name: o.name ?? "", pageSize: 1000 });
      out(printList(res.servers.map(serverRow), output, SERVER_LIST_COLUMNS));
    });
  server
    .command("show <id>")
    .description("one server")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { c, servers, output } = session(cmd);
      out(printOne(serverRow((await unary<GetServerResponse>(c, servers, "getServer", { id })).server!), output));
    });
  server
    .command("create <name>")
    .description("a new server")
    .requiredOption("--flavor <id>", "its flavor")
    .option("--image <id>", "the image it boots from")
    .option("--network <id>", "a network to be on (repeat for more)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--key-name <name>", "a key pair of the project")
    .option("--user-data <file>", "user data for the guest (cloud-init), at most 64 KiB")
    .option("--config-drive", "give it a config drive")
    .option("--wait", "follow it until it is built, showing its progress")
    .action(async (serverName: string, o: { flavor: string; image?: string; network: string[]; keyName?: string; userData?: string; configDrive?: boolean; wait?: boolean }, cmd: Command) => {
      const { c, servers, output } = session(cmd);
      const req = {
        name: serverName,
        flavorId: o.flavor,
        imageId: o.image ?? "",
        networks: o.network.map((networkId) => ({ networkId, portId: "", fixedIp: "" })),
        keyName: o.keyName ?? "",
        userData: o.userData ? readFileArg("--user-data", o.userData) : Buffer.alloc(0),
        configDrive: o.configDrive ?? false,
      };
      let s = (await unary<CreateServerResponse>(c, servers, "createServer", req)).server!;
      if (o.wait) s = await waitFor(c, servers, s.id, settledServer);
      show(s, output);
    });
  addServerActions(server, { session, waitFor, show });
  server
    .command("delete <id>")
    .description("delete a server")
    .option("--wait", "follow it until it is gone")
    .action(async (id: string, o: { wait?: boolean }, cmd: Command) => {
      const { c, servers } = session(cmd);
      await unary(c, servers, "deleteServer", { id });
      if (o.wait) await waitFor(c, servers, id, (s) => s.status === ServerStatus.SERVER_STATUS_DELETED);
    });

  root
    .command("flavor")
    .description("flavors")
    .command("list")
    .description("the flavors")
    .action(async (_o: unknown, cmd: Command) => {
      const { c, flavors, output } = session(cmd);
      const res = await unary<ListFlavorsResponse>(c, flavors, "listFlavors", {});
      const rows = res.flavors.map((f) => ({
        id: f.id,
        name: f.name,
        vcpus: f.vcpus,
        ram_mb: f.ramMb,
        disk_gb: f.diskGb,
      }));
      out(printList(rows, output, ["id", "name", "vcpus", "ram_mb", "disk_gb"]));
    });

  const keypair = root.command("keypair").description("SSH key pairs of the project");
  const keypairRow = (k: Keypair): Row => ({ name: k.name, type: k.type, fingerprint: k.fingerprint, public_key: k.publicKey });
  keypair
    .command("list")
    .description("the project's key pairs")
    .action(async (_o: unknown, cmd: Command) => {
      const { c, keypairs, output } = session(cmd);
      const res = await unary<ListKeypairsResponse>(c, keypairs, "listKeypairs", {});
      out(printList(res.keypairs.map(keypairRow), output, ["name", "type", "fingerprint"]));
    });
  keypair
    .command("create <name>")
    .description("import a public key (--public-key FILE) or make a key pair, its private key written to --private-key FILE")
    .option("--public-key <file>", "the public key to import (OpenSSH's form, as in ~/.ssh/id_ed25519.pub)")
    .option("--private-key <file>", "where to write a made key pair's private key (mode 600; it is shown only now)")
    .action(async (keyName: string, o: { publicKey?: string; privateKey?: string }, cmd: Command) => {
      if (!o.publicKey === !o.privateKey) throw new UsageError("give --public-key FILE to import a key, or --private-key FILE to make one");
      if (o.privateKey && existsSync(o.privateKey)) throw new UsageError(`--private-key ${o.privateKey} exists: a new private key is not written over another`);
      const { c, keypairs, output } = session(cmd);
      const publicKey = o.publicKey ? readFileArg("--public-key", o.publicKey).toString("utf8") : "";
      const res = await unary<CreateKeypairResponse>(c, keypairs, "createKeypair", { name: keyName, publicKey });
      if (o.privateKey) writeFileSync(o.privateKey, res.privateKey, { mode: 0o600, flag: "wx" });
      out(printOne(keypairRow(res.keypair!), output));
    });
  keypair
    .command("delete <name>")
    .description("delete a key pair (servers made with it keep their copy)")
    .action(async (keyName: string, _o: unknown, cmd: Command) => {
      const { c, keypairs } = session(cmd);
      await unary(c, keypairs, "deleteKeypair", { name: keyName });
    });

  root
    .command("quota")
    .description("quotas")
    .command("show [project]")
    .description("a project's limits and usage (default: the caller's)")
    .action(async (project: string | undefined, _o: unknown, cmd: Command) => {
      const { c, quotas, output } = session(cmd);
      const res = await unary<GetLimitsResponse>(c, quotas, "getLimits", { projectId: project ?? "" });
      const rows = res.limits.map((l) => ({ resource: l.resource, limit: l.limit, in_use: l.inUse, reserved: l.reserved }));
      out(printList(rows, output, ["resource", "limit", "in_use", "reserved"]));
    });
  return root;
}

/** Runs the command line; resolves the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync([...argv], { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UsageError) {
      process.stderr.write(`novamesh: ${err.message}\n`);
      return 2;
    }
    if (err instanceof CallError) {
      for (const line of err.describe()) process.stderr.write(`novamesh: ${line}\n`);
      if (err.code === grpc.status.NOT_FOUND) return 3;
      return 1;
    }
    const code = (err as { exitCode?: number }).exitCode;
    process.stderr.write(`novamesh: ${(err as Error).message}\n`);
    return typeof code === "number" ? code : 1;
  }
}
