/**
 * `novamesh server list|show|create|delete`; the actions are in
 * server-actions.ts, how a server is shown and followed in server-view.ts.
 */
import type { Command } from "commander";
import { ServerServiceClient, ServerStatus, type CreateServerResponse, type GetServerResponse, type ListServersResponse } from "../gen/novamesh/compute/v1/server.js";
import { unary } from "./connection.js";
import { UsageError, printList, printOne, readFileArg } from "./output.js";
import { addServerActions } from "./server-actions.js";
import { many, out, pairs, session } from "./session.js";
import { SERVER_LIST_COLUMNS, serverRow, settledServer, show, waitFor } from "./server-view.js";

export function addServers(root: Command): void {
  const server = root.command("server").description("servers");
  server
    .command("list")
    .description("the project's servers (admins: --all-projects)")
    .option("--all-projects", "every project's (admins)")
    .option("--name <text>", "only those whose name contains it")
    .option("--status <status>", "only those in this status (ACTIVE, SHUTOFF, ERROR, …)")
    .option("--host <name>", "only those on this host (admins)")
    .option("--tag <tag>", "only those with every tag given (repeat)", many, [] as string[])
    .action(async (o: { allProjects?: boolean; name?: string; status?: string; host?: string; tag: string[] }, cmd: Command) => {
      const s = session(cmd);
      const status = o.status ? ServerStatus[`SERVER_STATUS_${o.status.toUpperCase()}` as keyof typeof ServerStatus] : 0;
      if (status === undefined) throw new UsageError(`--status ${o.status}: not a server status`);
      const res = await unary<ListServersResponse>(s.c, s.client(ServerServiceClient), "listServers", {
        allProjects: o.allProjects ?? false,
        name: o.name ?? "",
        status,
        host: o.host ?? "",
        tags: o.tag,
        pageSize: 1000,
      });
      out(printList(res.servers.map(serverRow), s.output, SERVER_LIST_COLUMNS));
    });
  server
    .command("show <id>")
    .description("one server")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const s = session(cmd);
      out(printOne(serverRow((await unary<GetServerResponse>(s.c, s.client(ServerServiceClient), "getServer", { id })).server!), s.output));
    });
  server
    .command("create <name>")
    .description("a new server")
    .requiredOption("--flavor <id>", "its flavor")
    .option("--image <id>", "the image it boots from")
    .option("--network <id>", "a network to be on (repeat for more)", many, [] as string[])
    .option("--port <id>", "a port of the project to use (repeat for more)", many, [] as string[])
    .option("--key-name <name>", "a key pair of the project")
    .option("--user-data <file>", "user data for the guest (cloud-init), at most 64 KiB")
    .option("--config-drive", "give it a config drive")
    .option("--availability-zone <zone>", "the zone to build it in")
    .option("--group <id>", "the server group it joins")
    .option("--property <key=value>", "metadata (repeat)", many, [] as string[])
    .option("--boot-volume-size <gb>", "boot from a new volume of this size made from the image (deleted with the server)")
    .option("--boot-volume <id>", "boot from this volume of the project (kept when the server is deleted)")
    .option("--security-group <id>", "a security group for its ports (repeat)", many, [] as string[])
    .option("--description <text>", "its description")
    .option("--tag <tag>", "a tag (repeat)", many, [] as string[])
    .option("--wait", "follow it until it is built, showing its progress")
    .action(async (serverName: string, o: CreateOptions, cmd: Command) => {
      const s = session(cmd);
      const res = await unary<CreateServerResponse>(s.c, s.client(ServerServiceClient), "createServer", createRequest(serverName, o));
      let server = res.server!;
      if (o.wait) server = await waitFor(s, server.id, settledServer, res.operation?.name);
      show(server, s.output);
    });
  addServerActions(server);
  server
    .command("delete <id>")
    .description("delete a server")
    .option("--wait", "follow it until it is gone")
    .action(async (id: string, o: { wait?: boolean }, cmd: Command) => {
      const s = session(cmd);
      await unary(s.c, s.client(ServerServiceClient), "deleteServer", { id });
      if (o.wait) await waitFor(s, id, (x) => x.status === ServerStatus.SERVER_STATUS_DELETED);
    });
}

interface CreateOptions {
  flavor: string;
  image?: string;
  network: string[];
  port: string[];
  keyName?: string;
  userData?: string;
  configDrive?: boolean;
  availabilityZone?: string;
  group?: string;
  property: string[];
  bootVolumeSize?: string;
  bootVolume?: string;
  securityGroup: string[];
  description?: string;
  tag: string[];
  wait?: boolean;
}

function createRequest(serverName: string, o: CreateOptions): object {
  const size = o.bootVolumeSize === undefined ? undefined : Number(o.bootVolumeSize);
  if (size !== undefined && (!Number.isInteger(size) || size < 1)) throw new UsageError(`--boot-volume-size must be a whole number of GiB, not "${o.bootVolumeSize}"`);
  if (size !== undefined && !o.image) throw new UsageError("--boot-volume-size needs --image: the volume is made from it");
  if (o.bootVolume && (o.image || size !== undefined)) throw new UsageError("--boot-volume goes without --image and --boot-volume-size");
  return {
    name: serverName,
    flavorId: o.flavor,
    imageId: size === undefined ? (o.image ?? "") : "",
    networks: [...o.network.map((networkId) => ({ networkId, portId: "", fixedIp: "" })), ...o.port.map((portId) => ({ networkId: "", portId, fixedIp: "" }))],
    keyName: o.keyName ?? "",
    userData: o.userData ? readFileArg("--user-data", o.userData) : Buffer.alloc(0),
    configDrive: o.configDrive ?? false,
    availabilityZone: o.availabilityZone ?? "",
    schedulerHints: o.group ? { group: o.group, sameHost: [], differentHost: [] } : undefined,
    metadata: pairs("--property", o.property),
    securityGroups: o.securityGroup,
    description: o.description ?? "",
    tags: o.tag,
    blockDeviceMappings: [
      ...(size === undefined ? [] : [{ volumeId: "", imageId: o.image, volumeSizeGb: size, volumeType: "", bootIndex: 0, deleteOnTermination: true }]),
      ...(o.bootVolume ? [{ volumeId: o.bootVolume, imageId: "", volumeSizeGb: 0, volumeType: "", bootIndex: 0, deleteOnTermination: false }] : []),
    ],
  };
}
