/** `novamesh volume …`: persistent disks, their snapshots, types and pools. */
import type { Command } from "commander";
import { HostServiceClient } from "../gen/novamesh/compute/v1/host.js";
import { VolumeServiceClient, VolumeStatus } from "../gen/novamesh/volume/v1/volume.js";
import { unary } from "./connection.js";
import type { Row } from "./output.js";
import { callCommand, enumArg, integer, listCommand, type Session } from "./session.js";
import { viewOf } from "./view.js";

/** The volume (or snapshot) again, once its operation is done. */
const again = (method: "getVolume" | "getVolumeSnapshot", field: string) => async (s: Session, shown: Row) => {
  const volumes = s.client(VolumeServiceClient);
  return viewOf(volumes, method, await unary(s.c, volumes, method, { id: shown.id }))[field] as Row;
};

export function addVolumes(root: Command): void {
  const volume = root.command("volume").description("volumes: disks that outlive servers");
  listCommand(volume, "list", "the project's volumes", {
    client: VolumeServiceClient,
    method: "listVolumes",
    options: (c) => c.option("--status <status>", "only those in this status (available, in-use, error, …)").option("--all-projects", "every project's (admins)"),
    request: (_a, o: { status?: string; allProjects?: boolean }) => ({
      status: o.status ? enumArg(VolumeStatus, "VOLUME_STATUS_", "--status", o.status) : 0,
      allProjects: o.allProjects ?? false,
      pageSize: 1000,
    }),
    field: "volumes",
    columns: ["id", "name", "status", "size_gb", "volume_type", "attachments"],
  });
  callCommand(volume, "show <id>", "one volume", { client: VolumeServiceClient, method: "getVolume", request: ([id]) => ({ id }), field: "volume" });
  callCommand(volume, "create <name>", "a new volume: blank, from an image or from a snapshot", {
    client: VolumeServiceClient,
    method: "createVolume",
    options: (c) =>
      c
        .option("--size <gb>", "its size, GiB (from an image or snapshot: at least theirs)")
        .option("--image <id>", "an image to fill it with")
        .option("--snapshot <id>", "a snapshot to make it from")
        .option("--type <name>", "its volume type")
        .option("--availability-zone <zone>", "its zone")
        .option("--description <text>", "what it is for"),
    request: ([name], o: { size?: string; image?: string; snapshot?: string; type?: string; availabilityZone?: string; description?: string }) => ({
      name,
      sizeGb: integer("--size", o.size) ?? 0,
      imageId: o.image ?? "",
      snapshotId: o.snapshot ?? "",
      volumeType: o.type ?? "",
      availabilityZone: o.availabilityZone ?? "",
      description: o.description ?? "",
    }),
    field: "volume",
    wait: { refresh: again("getVolume", "volume") },
  });
  callCommand(volume, "delete <id>", "delete a volume that no server uses", { client: VolumeServiceClient, method: "deleteVolume", request: ([id]) => ({ id }), wait: {} });
  callCommand(volume, "extend <id> <gb>", "grow a volume (online when attached)", {
    client: VolumeServiceClient,
    method: "extendVolume",
    request: ([id, size]) => ({ id, newSizeGb: integer("size", size) }),
    wait: {},
  });

  const snapshot = root.command("volume-snapshot").description("volume snapshots");
  listCommand(snapshot, "list", "the project's volume snapshots", {
    client: VolumeServiceClient,
    method: "listVolumeSnapshots",
    options: (c) => c.option("--volume <id>", "of one volume").option("--all-projects", "every project's (admins)"),
    request: (_a, o: { volume?: string; allProjects?: boolean }) => ({ volumeId: o.volume ?? "", allProjects: o.allProjects ?? false }),
    field: "snapshots",
    columns: ["id", "name", "volume_id", "status", "size_gb"],
  });
  callCommand(snapshot, "show <id>", "one snapshot", { client: VolumeServiceClient, method: "getVolumeSnapshot", request: ([id]) => ({ id }), field: "snapshot" });
  callCommand(snapshot, "create <volume> <name>", "snapshot a volume", {
    client: VolumeServiceClient,
    method: "createVolumeSnapshot",
    options: (c) => c.option("--description <text>", "what it is for"),
    request: ([volumeId, name], o: { description?: string }) => ({ volumeId, name, description: o.description ?? "" }),
    field: "snapshot",
    wait: { refresh: again("getVolumeSnapshot", "snapshot") },
  });
  callCommand(snapshot, "delete <id>", "delete a snapshot no volume is being made from", {
    client: VolumeServiceClient,
    method: "deleteVolumeSnapshot",
    request: ([id]) => ({ id }),
    wait: {},
  });

  const type = root.command("volume-type").description("volume types: which backend a volume is made on");
  listCommand(type, "list", "the volume types", { client: VolumeServiceClient, method: "listVolumeTypes", field: "volume_types", columns: ["name", "backend", "description"] });
  callCommand(type, "create <name>", "a new volume type (admins)", {
    client: VolumeServiceClient,
    method: "createVolumeType",
    options: (c) => c.requiredOption("--backend <name>", "the pools' backend, like qcow2").option("--description <text>", "what it is for"),
    request: ([name], o: { backend: string; description?: string }) => ({ name, backend: o.backend, description: o.description ?? "" }),
    field: "volume_type",
  });
  callCommand(type, "delete <name>", "delete a volume type no volume uses (admins)", { client: VolumeServiceClient, method: "deleteVolumeType", request: ([name]) => ({ name }) });

  listCommand(root.command("volume-pool").description("volume hosts' pools (admins)"), "list", "the pools and their capacity", {
    client: HostServiceClient,
    method: "listVolumePools",
    options: (c) => c.option("--host <name>", "of one volume host"),
    request: (_a, o: { host?: string }) => ({ host: o.host ?? "" }),
    field: "pools",
    columns: ["host", "name", "backend", "state", "status", "free_bytes", "total_bytes"],
  });
}
