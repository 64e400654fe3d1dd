import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ComputeOp } from "../gen/novamesh/agent/v1/ops.js";
import { PowerState, TaskState } from "../gen/novamesh/compute/v1/server.js";
import { testInstance } from "./drivers/test-instance.js";
import { GIB } from "../controller/domain/volume-ops.js";
import type { AgentOp, AgentVolumeOp } from "./ops/agent-op.js";
import { testOp, testVolume, testVolumeOp } from "./ops/test-ops.js";
import { agentOpFromProto, opProgressToProto, opResultToProto } from "./proto-convert.js";
import { computeOpOf, computeOpOfVolumeOp } from "./test-compute-op.js";

describe("ComputeOp in: the agent's own op", () => {
  test("every kind of ComputeOp comes in as the AgentOp of that kind, with its arguments, instance and header", () => {
    const inst = testInstance({ extraSpecs: { "hw:cpu_policy": "dedicated" }, metadata: { role: "db" } });
    const deadline = new Date(Date.now() + 60_000);
    const ops: AgentOp[] = [
      testOp(inst, { kind: "spawn" }),
      testOp(inst, { kind: "destroy" }),
      testOp(inst, { kind: "power_on" }),
      testOp(inst, { kind: "power_off", timeoutSeconds: 30 }),
      testOp(inst, { kind: "reboot", hard: false, softTimeoutSeconds: 12 }),
      testOp(inst, { kind: "pause" }),
      testOp(inst, { kind: "unpause" }),
      testOp(inst, { kind: "suspend" }),
      testOp(inst, { kind: "resume" }),
      testOp(inst, { kind: "snapshot", imageId: "img-1", imageName: "before upgrade" }),
      testOp(inst, { kind: "shelve", imageId: "img-2", imageName: "shelved", timeoutSeconds: 5 }),
      testOp(inst, { kind: "rebuild", recreate: true }),
      testOp(inst, { kind: "migrate_disk", targetHost: "b", timeoutSeconds: 7 }),
      testOp(inst, { kind: "finish_migration", sourceHost: "a", powerOn: false }),
      testOp(inst, { kind: "confirm_migration" }),
      testOp(inst, { kind: "revert_migration" }),
      testOp(inst, { kind: "finish_revert_migration", powerOn: false }),
      testOp(inst, { kind: "pre_live_migration", sourceHost: "a" }),
      testOp(inst, { kind: "live_migrate", targetHost: "b", targetUri: "qemu+tcp://b/system", volumes: [] }),
      testOp(inst, {
        kind: "live_migrate",
        targetHost: "b",
        targetUri: "qemu+tcp://b/system",
        volumes: [{ attachmentId: "exp-2", export: { host: "192.0.2.9", port: 10810, exportName: "exp-2" } }],
      }),
      testOp(inst, { kind: "post_live_migration", sourceHost: "a" }),
      testOp(inst, { kind: "rollback_live_migration" }),
      { ...testOp(inst, { kind: "abort", targetOpId: "op-1" }), deadline },
    ];
    for (const op of ops) assert.deepEqual(agentOpFromProto(computeOpOf(op)), op, op.kind);
  });

  test("a live migration whose volumes name a bad attachment id or an incomplete export comes in as an InvalidOp", () => {
    const inst = testInstance();
    const good = { attachmentId: "exp-1", export: { host: "192.0.2.9", port: 10810, exportName: "exp-1" } };
    const problemOf = (volumes: unknown[]): string => {
      const op = computeOpOf(testOp(inst, { kind: "live_migrate", targetHost: "b", targetUri: "qemu+tcp://b/system", volumes: [good] }));
      assert.ok(op.op?.$case === "liveMigrate");
      const liveMigrate = { ...op.op.liveMigrate, volumes: volumes as typeof op.op.liveMigrate.volumes };
      const got = agentOpFromProto({ ...op, op: { $case: "liveMigrate", liveMigrate } });
      return "problem" in got ? got.problem : "";
    };
    assert.equal(problemOf([good]), "");
    assert.equal(problemOf([good, { ...good, attachmentId: "../x" }]), 'live_migrate.volumes[1].attachment_id "../x" is not an attachment id');
    assert.equal(problemOf([good, good]), "live_migrate.volumes names attachment exp-1 twice");
    assert.equal(problemOf([{ ...good, export: undefined }]), "live_migrate.volumes[0].export is not set");
    assert.equal(problemOf([{ ...good, export: { ...good.export, host: "" } }]), "live_migrate.volumes[0].export.host is empty");
    assert.equal(problemOf([{ ...good, export: { ...good.export, port: 70000 } }]), "live_migrate.volumes[0].export.port 70000 is not a port (1-65535)");
    assert.equal(problemOf([{ ...good, export: { ...good.export, exportName: "" } }]), "live_migrate.volumes[0].export.export_name is empty");
  });

  test("a ComputeOp without an operation, an instance or an op id, or an abort without a target or of itself, comes in as an InvalidOp", () => {
    const inst = testInstance();
    const spawn = computeOpOf(testOp(inst, { kind: "spawn" }));
    assert.deepEqual(agentOpFromProto({ ...spawn, op: undefined }), {
      opId: spawn.opId,
      serverId: inst.id,
      problem: "the op names no operation (unknown to this agent version?)",
    });
    assert.deepEqual(agentOpFromProto({ ...spawn, instance: undefined }), { opId: spawn.opId, serverId: "", problem: "instance.id is empty" });
    assert.deepEqual(agentOpFromProto({ ...spawn, opId: "" }), { opId: "", serverId: inst.id, problem: "op_id is empty" });
    const noTarget = computeOpOf(testOp(inst, { kind: "abort", targetOpId: "" }));
    assert.equal(agentOpFromProto(noTarget).opId, noTarget.opId);
    assert.deepEqual(agentOpFromProto(noTarget), { opId: noTarget.opId, serverId: inst.id, problem: "abort.target_op_id is empty" });
    const self = testOp(inst, { kind: "abort", targetOpId: "x" }, "x");
    assert.deepEqual(agentOpFromProto(computeOpOf(self)), { opId: "x", serverId: inst.id, problem: "an abort op cannot abort itself" });
  });
});

describe("ComputeOp in: a volume op", () => {
  const image = { id: "img-1", name: "debian", diskFormat: "qcow2", checksum: "ab".repeat(32) };

  test("each volume op kind comes in as the AgentVolumeOp of that kind, with its volume, source or size, and header", () => {
    const vol = testVolume({ sizeBytes: 3 * GIB });
    const deadline = new Date(Date.now() + 60_000);
    const ops: AgentVolumeOp[] = [
      testVolumeOp(vol, { kind: "create_volume" }),
      { ...testVolumeOp(vol, { kind: "create_volume", source: { kind: "image", image } }), deadline },
      testVolumeOp(vol, { kind: "create_volume", source: { kind: "snapshot", volumeId: "vol-src", snapshotId: "snap-1" } }),
      testVolumeOp(vol, { kind: "extend_volume", sizeBytes: 5 * GIB }),
      testVolumeOp(vol, { kind: "delete_volume" }),
      testVolumeOp(vol, { kind: "create_volume_snapshot", snapshotId: "snap-2" }),
      { ...testVolumeOp(vol, { kind: "delete_volume_snapshot", snapshotId: "snap-2" }), deadline },
    ];
    for (const op of ops) assert.deepEqual(agentOpFromProto(computeOpOfVolumeOp(op)), op, op.kind);
  });

  test("a volume op that names no usable volume, size or source comes in as an InvalidOp carrying the volume id", () => {
    const vol = testVolume();
    const create = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "create_volume" }));
    const problem = (o: typeof create) => {
      const got = agentOpFromProto(o);
      assert.ok("problem" in got, `came in as a runnable op: ${JSON.stringify(got)}`);
      return got;
    };
    assert.deepEqual(problem({ ...create, volume: undefined }), { opId: create.opId, serverId: "", volumeId: "", problem: "create_volume names no volume" });
    assert.equal(problem({ ...create, volume: { ...vol, id: "" } }).problem, "volume.id is empty");
    assert.equal(problem({ ...create, volume: { ...vol, id: "../etc/passwd" } }).problem, 'volume.id "../etc/passwd" is not a volume id');
    assert.equal(problem({ ...create, volume: { ...vol, pool: "" } }).problem, "volume.pool is empty");
    assert.equal(problem({ ...create, volume: { ...vol, sizeBytes: 0 } }).problem, "volume.size_bytes 0 is not a positive whole number of bytes");
    assert.equal(problem({ ...create, volume: { ...vol, sizeBytes: 1.5 } }).problem, "volume.size_bytes 1.5 is not a positive whole number of bytes");
    assert.deepEqual(problem({ ...create, opId: "" }), { opId: "", serverId: "", volumeId: vol.id, problem: "op_id is empty" });
    const both = { $case: "createVolume" as const, createVolume: { image: { ...image, properties: {} }, sourceVolumeId: "v", sourceSnapshotId: "s" } };
    assert.equal(problem({ ...create, op: both }).problem, "create_volume names both an image and a snapshot to copy");
    const halfSnapshot = { $case: "createVolume" as const, createVolume: { image: undefined, sourceVolumeId: "v", sourceSnapshotId: "" } };
    assert.equal(problem({ ...create, op: halfSnapshot }).problem, 'create_volume.source_snapshot_id "" is not a snapshot id');
    const noImageId = { $case: "createVolume" as const, createVolume: { image: { ...image, id: "", properties: {} }, sourceVolumeId: "", sourceSnapshotId: "" } };
    assert.equal(problem({ ...create, op: noImageId }).problem, "create_volume.image.id is empty");
    const extend = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "extend_volume", sizeBytes: 0 }));
    assert.equal(problem(extend).problem, "extend_volume.size_bytes 0 is not a positive whole number of bytes");
    const withInstance = { ...create, instance: computeOpOf(testOp(testInstance(), { kind: "spawn" })).instance };
    assert.equal(problem(withInstance).problem, "create_volume acts on a volume; the op carries an instance");
  });

  test("a delete needs only the volume's id: a cleanup is not refused over a pool or size it does not use", () => {
    const vol = testVolume();
    const del = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "delete_volume" }));
    const got = agentOpFromProto({ ...del, volume: { ...vol, pool: "", sizeBytes: 0 } });
    assert.equal("problem" in got, false);
    assert.deepEqual(agentOpFromProto({ ...del, volume: { ...vol, id: "" } }), { opId: del.opId, serverId: "", volumeId: "", problem: "volume.id is empty" });
    assert.deepEqual(agentOpFromProto({ ...del, volume: undefined }), { opId: del.opId, serverId: "", volumeId: "", problem: "delete_volume names no volume" });
  });

  /** Why `o` cannot be run ("" if it can). */
  const problemOf = (o: ComputeOp): string => {
    const got = agentOpFromProto(o);
    return "problem" in got ? got.problem : "";
  };

  test("a snapshot's create or delete needs only the volume's id and a snapshot id; anything else is an InvalidOp of its volume", () => {
    const vol = testVolume();
    for (const kind of ["create_volume_snapshot", "delete_volume_snapshot"] as const) {
      const op = computeOpOfVolumeOp(testVolumeOp(vol, { kind }));
      assert.equal(problemOf({ ...op, volume: { ...vol, pool: "", sizeBytes: 0 } }), "", `${kind} without pool or size`);
      for (const snapshotId of ["", "../x", "-snap", "a b"]) {
        const bad = computeOpOfVolumeOp(testVolumeOp(vol, { kind, snapshotId }));
        const problem = `${kind}.snapshot_id "${snapshotId}" is not a snapshot id`;
        assert.deepEqual(agentOpFromProto(bad), { opId: bad.opId, serverId: "", volumeId: vol.id, problem });
      }
      assert.deepEqual(agentOpFromProto({ ...op, volume: undefined }), { opId: op.opId, serverId: "", volumeId: "", problem: `${kind} names no volume` });
      assert.equal(problemOf({ ...op, volume: { ...vol, id: "a/b" } }), 'volume.id "a/b" is not a volume id');
      const withInstance = { ...op, instance: computeOpOf(testOp(testInstance(), { kind: "spawn" })).instance };
      assert.equal(problemOf(withInstance), `${kind} acts on a volume; the op carries an instance`);
    }
  });

  test("an op on an instance that carries a volume instead of an instance is an InvalidOp", () => {
    const spawn = computeOpOf(testOp(testInstance(), { kind: "spawn" }));
    assert.deepEqual(agentOpFromProto({ ...spawn, instance: undefined, volume: testVolume() }), {
      opId: spawn.opId,
      serverId: "",
      problem: "an op on an instance (spawn) carries a volume",
    });
  });
});

describe("ComputeOp in: attaching a volume (compute host) and exporting it (volume host)", () => {
  const vol = testVolume();
  const inst = testInstance();
  /** The problem of an op that must come in as an InvalidOp. */
  const problem = (o: ComputeOp) => {
    const got = agentOpFromProto(o);
    assert.ok("problem" in got, `came in as a runnable op: ${JSON.stringify(got)}`);
    return got;
  };

  test("attach and detach come in as ops on the instance; export and unexport as volume ops naming the server, with or without it", () => {
    const ops: (AgentOp | AgentVolumeOp)[] = [
      testOp(inst, { kind: "attach_volume", attachmentId: "att-1", volumeId: vol.id, device: "vdc" }),
      testOp(inst, { kind: "attach_volume" }),
      testOp(inst, { kind: "detach_volume", attachmentId: "att-2" }),
      testVolumeOp(vol, { kind: "export_volume", attachmentId: "att-3", client: "compute-2.example", serverId: inst.id }),
      testVolumeOp(vol, { kind: "unexport_volume", attachmentId: "att-3", serverId: inst.id }),
      testVolumeOp(vol, { kind: "export_volume" }),
      testVolumeOp(vol, { kind: "unexport_volume" }),
      testOp(inst, { kind: "extend_volume_disk", attachmentId: "att-4", sizeBytes: 3 * 1024 ** 3 }),
      testVolumeOp(vol, { kind: "grow_volume", sizeBytes: 3 * 1024 ** 3, serverId: inst.id }),
      testVolumeOp(vol, { kind: "grow_volume" }),
      testVolumeOp(vol, { kind: "reimage_volume", serverId: inst.id }),
    ];
    for (const op of ops) {
      const wire = "volume" in op ? computeOpOfVolumeOp(op) : computeOpOf(op);
      assert.deepEqual(agentOpFromProto(wire), op, op.kind);
    }
    const bare = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "unexport_volume" }));
    assert.equal("problem" in agentOpFromProto({ ...bare, volume: { ...vol, pool: "", sizeBytes: 0 } }), false, "an unexport needs only the volume's id");
  });

  test("an attach or detach without a usable attachment, volume or export is an InvalidOp of its server", () => {
    const attach = computeOpOf(testOp(inst, { kind: "attach_volume" }));
    const withArgs = (args: Partial<AgentOp<"attach_volume">>): ComputeOp => {
      const o = attach.op as Extract<ComputeOp["op"], { $case: "attachVolume" }>;
      return { ...attach, op: { $case: "attachVolume", attachVolume: { ...o.attachVolume, ...args } } };
    };
    const base = (attach.op as Extract<ComputeOp["op"], { $case: "attachVolume" }>).attachVolume.export!;
    assert.deepEqual(problem(withArgs({ attachmentId: "" })), { opId: attach.opId, serverId: inst.id, problem: 'attach_volume.attachment_id "" is not an attachment id' });
    assert.equal(problem(withArgs({ volumeId: "a/b" })).problem, 'attach_volume.volume_id "a/b" is not a volume id');
    assert.equal(problem(withArgs({ export: undefined })).problem, "attach_volume names no export");
    assert.equal(problem(withArgs({ export: { ...base, host: "" } })).problem, "attach_volume.export.host is empty");
    assert.equal(problem(withArgs({ export: { ...base, port: 0 } })).problem, "attach_volume.export.port 0 is not a port (1-65535)");
    assert.equal(problem(withArgs({ export: { ...base, port: 65536 } })).problem, "attach_volume.export.port 65536 is not a port (1-65535)");
    assert.equal(problem(withArgs({ export: { ...base, exportName: "" } })).problem, "attach_volume.export.export_name is empty");
    const detach = computeOpOf(testOp(inst, { kind: "detach_volume", attachmentId: "-x" }));
    assert.equal(problem(detach).problem, 'detach_volume.attachment_id "-x" is not an attachment id');
    assert.equal(problem({ ...detach, instance: undefined }).problem, "instance.id is empty");
    assert.equal(problem({ ...attach, volume: vol }).problem, "an op on an instance (attachVolume) carries a volume");
  });

  test("a spawn from a volume comes in with its root attachment and export; one from an image, off the wire, with neither", () => {
    const rootExport = { host: "192.0.2.9", port: 10811, exportName: "att-root" };
    const fromVolume = testOp(inst, { kind: "spawn", rootAttachmentId: "att-root", rootExport });
    assert.deepEqual(agentOpFromProto(ComputeOp.decode(ComputeOp.encode(computeOpOf(fromVolume)).finish())), fromVolume);
    const fromImage = testOp(inst, { kind: "spawn" });
    const decoded = agentOpFromProto(ComputeOp.decode(ComputeOp.encode(computeOpOf(fromImage)).finish()));
    assert.deepEqual(decoded, fromImage);
    assert.equal("rootAttachmentId" in decoded, false, "a spawn from an image names no root volume");
  });

  test("a spawn with half a root volume, or an unusable one, is an InvalidOp of its server", () => {
    const rootExport = { host: "192.0.2.9", port: 10811, exportName: "att-root" };
    const spawn = (args: Partial<AgentOp<"spawn">>) => computeOpOf(testOp(inst, { kind: "spawn", ...args }));
    const half = spawn({ rootAttachmentId: "att-root" });
    assert.deepEqual(problem(half), { opId: half.opId, serverId: inst.id, problem: "spawn names a root_attachment_id but no root_export" });
    assert.equal(problem(spawn({ rootExport })).problem, "spawn names a root_export but no root_attachment_id");
    assert.equal(problem(spawn({ rootAttachmentId: "../etc", rootExport })).problem, 'spawn.root_attachment_id "../etc" is not an attachment id');
    assert.equal(problem(spawn({ rootAttachmentId: "att-root", rootExport: { ...rootExport, host: "" } })).problem, "spawn.root_export.host is empty");
    assert.equal(problem(spawn({ rootAttachmentId: "att-root", rootExport: { ...rootExport, port: 70000 } })).problem, "spawn.root_export.port 70000 is not a port (1-65535)");
    assert.equal(problem(spawn({ rootAttachmentId: "att-root", rootExport: { ...rootExport, exportName: "" } })).problem, "spawn.root_export.export_name is empty");
  });

  test("a spawn, an evacuation's rebuild and a cold migration's finish come in with their root and attached volumes; a migrate_disk with boots_from_volume when set", () => {
    const rootExport = { host: "192.0.2.9", port: 10811, exportName: "att-root" };
    const volumes = [
      { attachmentId: "att-b", device: "vdb", export: { host: "192.0.2.9", port: 10812, exportName: "att-b" } },
      { attachmentId: "att-d", device: "vdd", export: { host: "vol-2.example", port: 10813, exportName: "att-d" } },
    ];
    const ops: AgentOp[] = [
      testOp(inst, { kind: "spawn", volumes }),
      testOp(inst, { kind: "spawn", rootAttachmentId: "att-root", rootExport, volumes }),
      testOp(inst, { kind: "rebuild", recreate: true, rootAttachmentId: "att-root", rootExport, volumes }),
      testOp(inst, { kind: "rebuild", recreate: true, volumes }),
      testOp(inst, { kind: "finish_migration", sourceHost: "a", powerOn: true, rootAttachmentId: "att-root", rootExport, volumes }),
      testOp(inst, { kind: "finish_migration", sourceHost: "a", powerOn: false, volumes: [volumes[0]!] }),
      testOp(inst, { kind: "migrate_disk", targetHost: "b", timeoutSeconds: 7, bootsFromVolume: true }),
    ];
    for (const op of ops) assert.deepEqual(agentOpFromProto(ComputeOp.decode(ComputeOp.encode(computeOpOf(op)).finish())), op, op.kind);
    const plain = agentOpFromProto(computeOpOf(testOp(inst, { kind: "finish_migration", sourceHost: "a", powerOn: true })));
    assert.equal("volumes" in plain || "rootAttachmentId" in plain || "rootExport" in plain, false, "no volumes named: none there");
    const local = agentOpFromProto(computeOpOf(testOp(inst, { kind: "migrate_disk", targetHost: "b", timeoutSeconds: 0, bootsFromVolume: false })));
    assert.equal("bootsFromVolume" in local, false, "a local root disk: no flag");
  });

  test("a spawn, rebuild or finish_migration with half a root volume or a bad attached volume is an InvalidOp naming the field", () => {
    const rootExport = { host: "192.0.2.9", port: 10811, exportName: "att-root" };
    const good = { attachmentId: "att-b", device: "vdb", export: { host: "192.0.2.9", port: 10812, exportName: "att-b" } };
    const problemOf = (kind: "spawn" | "rebuild" | "finish_migration", args: { rootAttachmentId?: string; rootExport?: object; volumes?: unknown[] }): string => {
      const base = kind === "rebuild" ? { recreate: true } : kind === "finish_migration" ? { sourceHost: "a", powerOn: true } : {};
      const wire = computeOpOf(testOp(inst, { kind, ...base, ...args } as Parameters<typeof testOp>[1]));
      const got = agentOpFromProto(wire);
      return "problem" in got ? got.problem : "";
    };
    assert.equal(problemOf("finish_migration", { volumes: [good] }), "");
    assert.equal(problemOf("rebuild", { rootAttachmentId: "att-root" }), "rebuild names a root_attachment_id but no root_export");
    assert.equal(problemOf("finish_migration", { rootExport }), "finish_migration names a root_export but no root_attachment_id");
    assert.equal(problemOf("finish_migration", { rootAttachmentId: "x y", rootExport }), 'finish_migration.root_attachment_id "x y" is not an attachment id');
    assert.equal(problemOf("rebuild", { rootAttachmentId: "att-root", rootExport: { ...rootExport, port: 0 } }), "rebuild.root_export.port 0 is not a port (1-65535)");
    const vol = (over: object) => [good, { ...good, attachmentId: "att-c", device: "vdc", ...over }];
    assert.equal(problemOf("finish_migration", { volumes: vol({ export: { ...good.export, port: 70000 } }) }), "finish_migration.volumes[1].export.port 70000 is not a port (1-65535)");
    assert.equal(problemOf("finish_migration", { volumes: vol({ export: undefined }) }), "finish_migration.volumes[1].export is not set");
    assert.equal(problemOf("spawn", { volumes: vol({ export: { ...good.export, host: "" } }) }), "spawn.volumes[1].export.host is empty");
    assert.equal(problemOf("spawn", { volumes: vol({ attachmentId: "../x" }) }), 'spawn.volumes[1].attachment_id "../x" is not an attachment id');
    assert.equal(problemOf("spawn", { volumes: vol({ device: "" }) }), "spawn.volumes[1].device is empty");
    assert.equal(problemOf("rebuild", { volumes: vol({ device: "sdc" }) }), 'rebuild.volumes[1].device "sdc" is not a virtio disk (vdb…vdz)');
    assert.equal(problemOf("rebuild", { volumes: vol({ device: "vdaa" }) }), 'rebuild.volumes[1].device "vdaa" is not a virtio disk (vdb…vdz)');
    assert.equal(problemOf("spawn", { volumes: vol({ device: "vda" }) }), "spawn.volumes[1].device is vda, the root disk's");
    assert.equal(problemOf("spawn", { volumes: vol({ device: "vdb" }) }), "spawn names device vdb twice");
    assert.equal(problemOf("finish_migration", { volumes: vol({ attachmentId: "att-b", device: "vdc" }) }), "finish_migration names attachment att-b twice");
    assert.equal(problemOf("spawn", { rootAttachmentId: "att-b", rootExport, volumes: [good] }), "spawn names attachment att-b twice", "the root volume's attachment too");
  });

  test("an export or unexport without a usable volume, attachment or client is an InvalidOp of its volume and server", () => {
    const exp = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "export_volume", serverId: inst.id }));
    assert.deepEqual(problem({ ...exp, volume: undefined }), { opId: exp.opId, serverId: inst.id, volumeId: "", problem: "export_volume names no volume" });
    assert.equal(problem({ ...exp, volume: { ...vol, id: "../x" } }).problem, 'volume.id "../x" is not a volume id');
    const badAttachment = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "export_volume", attachmentId: "" }));
    assert.deepEqual(problem(badAttachment), { opId: badAttachment.opId, serverId: "", volumeId: vol.id, problem: 'export_volume.attachment_id "" is not an attachment id' });
    const badClient = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "export_volume", client: "-host;" }));
    assert.equal(problem(badClient).problem, 'export_volume.client "-host;" is not a host name');
    const noClient = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "export_volume", client: "" }));
    assert.equal(problem(noClient).problem, 'export_volume.client "" is not a host name');
    const unexp = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "unexport_volume", attachmentId: "a b" }));
    assert.equal(problem(unexp).problem, 'unexport_volume.attachment_id "a b" is not an attachment id');
    assert.equal(problem({ ...unexp, volume: undefined }).problem, "unexport_volume names no volume");
  });

  test("a grow_volume needs a pool and positive sizes; an extend_volume_disk an attachment id and a positive size", () => {
    const grow = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "grow_volume", serverId: inst.id }));
    assert.deepEqual(problem({ ...grow, volume: { ...vol, pool: "" } }), { opId: grow.opId, serverId: inst.id, volumeId: vol.id, problem: "volume.pool is empty" });
    const noSize = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "grow_volume", sizeBytes: 0 }));
    assert.equal(problem(noSize).problem, "grow_volume.size_bytes 0 is not a positive whole number of bytes");
    const disk = (args: Partial<AgentOp<"extend_volume_disk">>) => computeOpOf(testOp(inst, { kind: "extend_volume_disk", ...args }));
    const noAttachment = disk({ attachmentId: "" });
    assert.deepEqual(problem(noAttachment), { opId: noAttachment.opId, serverId: inst.id, problem: 'extend_volume_disk.attachment_id "" is not an attachment id' });
    assert.equal(problem(disk({ sizeBytes: -1 })).problem, "extend_volume_disk.size_bytes -1 is not a positive whole number of bytes");
  });

  test("a reimage_volume needs an image with an id", () => {
    const reimage = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "reimage_volume", serverId: inst.id }));
    const op = reimage.op as Extract<NonNullable<typeof reimage.op>, { $case: "reimageVolume" }>;
    assert.deepEqual(problem({ ...reimage, op: { $case: "reimageVolume", reimageVolume: { image: undefined } } }), { opId: reimage.opId, serverId: inst.id, volumeId: vol.id, problem: "reimage_volume names no image" });
    const noId = { $case: "reimageVolume" as const, reimageVolume: { image: { ...op.reimageVolume.image!, id: "" } } };
    assert.equal(problem({ ...reimage, op: noId }).problem, "reimage_volume.image.id is empty");
  });
});

describe("Outcomes and progress out: OpResult and OpProgress", () => {
  test("a failed outcome goes out with its failure as OpError and no note as an empty one", () => {
    const startTime = new Date(Date.now() - 1_000);
    const finishTime = new Date();
    const failure = { code: "DISK_FULL", message: "no space on pool", retryable: true };
    assert.deepEqual(opResultToProto({ opId: "o", serverId: "s", failure, powerState: "SHUTDOWN", startTime, finishTime }), {
      opId: "o",
      serverId: "s",
      error: failure,
      powerState: PowerState.POWER_STATE_SHUTDOWN,
      startTime,
      finishTime,
      snapshot: undefined,
      note: "",
      volumeId: "",
      volume: undefined,
    });
  });

  test("a successful outcome goes out with its snapshot and note; an unknown power state is UNSPECIFIED", () => {
    const now = new Date();
    const snapshot = { sizeBytes: 1024, checksum: "ab", diskFormat: "qcow2" };
    const result = opResultToProto({ opId: "o", serverId: "s", snapshot, note: "n", startTime: now, finishTime: now });
    assert.equal(result.error, undefined);
    assert.deepEqual(result.snapshot, snapshot);
    assert.equal(result.note, "n");
    assert.equal(result.powerState, PowerState.POWER_STATE_UNSPECIFIED);
  });

  test("a volume op's outcome goes out with its volume id and the volume's size, and no server id", () => {
    const now = new Date();
    const created = opResultToProto({ opId: "o", serverId: "", volumeId: "vol-1", volume: { sizeBytes: 3 * GIB }, startTime: now, finishTime: now });
    assert.equal(created.serverId, "");
    assert.equal(created.volumeId, "vol-1");
    assert.deepEqual(created.volume, { sizeBytes: 3 * GIB, export: undefined, device: "" });
    assert.equal(created.powerState, PowerState.POWER_STATE_UNSPECIFIED);
    const deleted = opResultToProto({ opId: "o", serverId: "", volumeId: "vol-1", startTime: now, finishTime: now });
    assert.equal(deleted.volume, undefined);
  });

  test("an export's outcome goes out with the export and its server; an attach's with the device", () => {
    const now = new Date();
    const where = { host: "192.0.2.7", port: 10810, exportName: "att-1" };
    const exported = opResultToProto({ opId: "o", serverId: "srv-1", volumeId: "vol-1", volume: { export: where }, startTime: now, finishTime: now });
    assert.deepEqual([exported.serverId, exported.volumeId], ["srv-1", "vol-1"]);
    assert.deepEqual(exported.volume, { sizeBytes: 0, export: where, device: "" });
    const attached = opResultToProto({ opId: "o", serverId: "srv-1", volume: { device: "vdb" }, powerState: "RUNNING", startTime: now, finishTime: now });
    assert.deepEqual(attached.volume, { sizeBytes: 0, export: undefined, device: "vdb" });
    assert.equal(attached.volumeId, "");
  });

  test("progress goes out with its task step, or none", () => {
    const step = opProgressToProto({ opId: "o", serverId: "s", percent: 0, message: "m", stage: "SHELVING_OFFLOADING" });
    assert.equal(step.taskState, TaskState.TASK_STATE_SHELVING_OFFLOADING);
    const plain = opProgressToProto({ opId: "o", serverId: "s", percent: 50, message: "m" });
    assert.deepEqual(plain, { opId: "o", serverId: "s", percent: 50, message: "m", taskState: TaskState.TASK_STATE_UNSPECIFIED });
  });
});
