/**
 * The `novamesh server` actions: each one call that returns the server and
 * its operation at once, as the API does; `--wait` follows the server until
 * its task is done and prints it. Also its console log, its actions and
 * migrations, and what is attached to it.
 */
import type { Command } from "commander";
import { ImageServiceClient } from "../gen/novamesh/compute/v1/image.js";
import { RebootType, ServerServiceClient, type CreateServerImageResponse, type Server } from "../gen/novamesh/compute/v1/server.js";
import { unary } from "./connection.js";
import { UsageError, printOne, type Row } from "./output.js";
import { show, waitFor } from "./server-view.js";
import { callCommand, followOperation, integer, listCommand, many, out, pairs, session } from "./session.js";
import { viewOf } from "./view.js";

/** A server's task is done (whatever state it is left in). */
const idle = (s: Server) => !s.taskState;

type Options = Record<string, unknown>;

/** The actions on one server: its id, then the action's own arguments. */
const ACTIONS: readonly { usage: string; method: string; description: string; args?: (o: Options, extra: string[]) => object; options?: (c: Command) => Command }[] = [
  { usage: "start", method: "startServer", description: "start a stopped server" },
  { usage: "stop", method: "stopServer", description: "stop a server (a clean shutdown)" },
  {
    usage: "reboot",
    method: "rebootServer",
    description: "reboot a server (soft: the guest shuts down; --hard: reset)",
    options: (c) => c.option("--hard", "a hard reboot"),
    args: (o) => ({ type: o.hard ? RebootType.REBOOT_TYPE_HARD : RebootType.REBOOT_TYPE_SOFT }),
  },
  { usage: "pause", method: "pauseServer", description: "pause a server (its memory stays)" },
  { usage: "unpause", method: "unpauseServer", description: "let a paused server run" },
  { usage: "suspend", method: "suspendServer", description: "suspend a server (its memory saved to disk)" },
  { usage: "resume", method: "resumeServer", description: "resume a suspended server" },
  { usage: "lock", method: "lockServer", description: "lock a server against its project's changes", options: (c) => c.option("--reason <text>", "why"), args: (o) => ({ reason: o.reason ?? "" }) },
  { usage: "unlock", method: "unlockServer", description: "unlock a server" },
  { usage: "shelve", method: "shelveServer", description: "shelve a server (snapshot, then off its host)" },
  { usage: "unshelve", method: "unshelveServer", description: "bring a shelved server back on a host" },
  { usage: "migrate", method: "migrateServer", description: "cold-migrate a server to another host", options: (c) => c.option("--host <name>", "the target (admins)"), args: (o) => ({ host: o.host ?? "" }) },
  {
    usage: "live-migrate",
    method: "liveMigrateServer",
    description: "live-migrate a running server to another host",
    options: (c) => c.option("--host <name>", "the target (admins)"),
    args: (o) => ({ host: o.host ?? "" }),
  },
  {
    usage: "evacuate",
    method: "evacuateServer",
    description: "rebuild a server of a host that is down on another host (admins)",
    options: (c) => c.option("--host <name>", "the target"),
    args: (o) => ({ host: o.host ?? "" }),
  },
  {
    usage: "rebuild",
    method: "rebuildServer",
    description: "rebuild a server from an image (its own by default)",
    options: (c) => c.option("--image <id>", "the image").option("--name <name>", "a new name"),
    args: (o) => ({ imageId: o.image ?? "", name: o.name ?? "" }),
  },
  { usage: "resize <flavor>", method: "resizeServer", description: "resize a server to another flavor (then resize-confirm or resize-revert)", args: (_o, [flavorId]) => ({ flavorId }) },
  { usage: "resize-confirm", method: "confirmResize", description: "keep a resized or migrated server where it is now" },
  { usage: "resize-revert", method: "revertResize", description: "take a resized or migrated server back" },
  {
    usage: "add-volume <volume>",
    method: "attachVolume",
    description: "attach a volume (hot-plugged into a running server)",
    args: (_o, [volumeId]) => ({ volumeId }),
  },
  { usage: "remove-volume <volume>", method: "detachVolume", description: "detach a volume", args: (_o, [volumeId]) => ({ volumeId }) },
  {
    usage: "add-interface",
    method: "attachInterface",
    description: "plug a new interface: on a network (--network, --fixed-ip) or a port (--port)",
    options: (c) => c.option("--network <id>", "a network").option("--port <id>", "a port of the project").option("--fixed-ip <address>", "the address on --network"),
    args: (o) => {
      if (!o.network === !o.port) throw new UsageError("give --network or --port");
      return { networkId: o.network ?? "", portId: o.port ?? "", fixedIp: o.fixedIp ?? "" };
    },
  },
  { usage: "remove-interface <port>", method: "detachInterface", description: "unplug an interface by its port", args: (_o, [portId]) => ({ portId }) },
];

export function addServerActions(server: Command): void {
  for (const a of ACTIONS) {
    let cmd = server.command(`${a.usage.replace(/^(\S+)/, "$1 <id>")}`).description(a.description).option("--wait", "follow it until the action is done");
    if (a.options) cmd = a.options(cmd);
    cmd.action(async (...all: unknown[]) => {
      const self = all.at(-1) as Command;
      const o = all.at(-2) as Options & { wait?: boolean };
      const [id, ...extra] = all.slice(0, -2) as string[];
      const s = session(self);
      const res = await unary<{ server?: Server; operation?: { name: string } }>(s.c, s.client(ServerServiceClient), a.method, { id, ...(a.args?.(o, extra) ?? {}) });
      show(o.wait ? await waitFor(s, id!, idle, res.operation?.name) : res.server!, s.output);
    });
  }
  server
    .command("image <id> <name>")
    .description("snapshot a server's root disk as a new image; prints the image")
    .option("--property <key=value>", "an image property (repeat)", many, [] as string[])
    .option("--wait", "follow it until the image is stored")
    .action(async (id: string, name: string, o: { property: string[]; wait?: boolean }, self: Command) => {
      const s = session(self);
      const res = await unary<CreateServerImageResponse>(s.c, s.client(ServerServiceClient), "createServerImage", { id, name, metadata: pairs("--property", o.property) });
      // A failed snapshot takes its image away: then there is nothing to show but the failure (said on stderr).
      if (o.wait && res.operation && (await followOperation(s, res.operation.name)).failed) return;
      const images = s.client(ImageServiceClient);
      out(printOne(viewOf(images, "getImage", await unary(s.c, images, "getImage", { id: res.imageId })).image as Row, s.output));
    });
  callCommand(server, "set <id>", "rename a server or change its description (metadata: set-property; tags: tag)", {
    client: ServerServiceClient,
    method: "updateServer",
    options: (c) => c.option("--name <name>", "its new name").option("--description <text>", "its new description"),
    request: ([id], o: { name?: string; description?: string }) => {
      const mask = [...(o.name !== undefined ? ["name"] : []), ...(o.description !== undefined ? ["description"] : [])];
      if (mask.length === 0) throw new UsageError("give --name or --description");
      return { server: { id, name: o.name ?? "", description: o.description ?? "" }, updateMask: mask };
    },
    field: "server",
  });
  callCommand(server, "set-property <id> <key=value...>", "set metadata items (others are kept)", {
    client: ServerServiceClient,
    method: "updateServerMetadata",
    request: ([id, ...items]) => ({ id, metadata: pairs("property", items as unknown as string[]), replace: false }),
  });
  callCommand(server, "unset-property <id> <key...>", "remove metadata items", {
    client: ServerServiceClient,
    method: "deleteServerMetadata",
    request: ([id, ...keys]) => ({ id, keys }),
  });
  callCommand(server, "tag <id> <tags...>", "set a server's tags (replacing them all)", {
    client: ServerServiceClient,
    method: "setServerTags",
    request: ([id, ...tags]) => ({ id, tags }),
  });
  server
    .command("console-log <id>")
    .description("the end of a server's serial console")
    .option("--lines <n>", "how many lines (default 50)", "50")
    .action(async (id: string, o: { lines: string }, self: Command) => {
      const s = session(self);
      const res = await unary<{ output: string }>(s.c, s.client(ServerServiceClient), "getConsoleOutput", { id, length: integer("--lines", o.lines) });
      process.stdout.write(res.output.endsWith("\n") || !res.output ? res.output : `${res.output}\n`);
    });
  listCommand(server, "action-list <id>", "what was done to a server, newest first, with the events of each", {
    client: ServerServiceClient,
    method: "listServerActions",
    request: ([serverId]) => ({ serverId }),
    field: "actions",
    columns: ["action", "request_id", "start_time", "message", "events"],
  }).alias("event-list");
  listCommand(server, "migration-list", "migrations, newest first (admins: of every project)", {
    client: ServerServiceClient,
    method: "listMigrations",
    options: (c) => c.option("--server <id>", "of one server").option("--all-projects", "every project's (admins)"),
    request: (_a, o: { server?: string; allProjects?: boolean }) => ({ serverId: o.server ?? "", allProjects: o.allProjects ?? false, pageSize: 1000 }),
    field: "migrations",
    columns: ["id", "server_id", "type", "status", "source_host", "target_host", "create_time"],
  });
}
