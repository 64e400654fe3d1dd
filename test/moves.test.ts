/**
 * Resize, cold migration, confirm and revert on real MySQL + NATS with three
 * fake agents: the server moves, a migration record follows it, and every
 * host's capacity equals the sum of the allocations that hold it at every
 * step.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { MigrationStatus, MigrationType, PowerState, ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import { decodeStatusDetails } from "../controller/api/status.js";
import { assertCapacityExact, history, waitServers } from "./harness.js";
import { stack } from "./stack.js";

const SMALL = { vcpus: 1, ram: 2048, disk: 20 };
const MEDIUM = { vcpus: 2, ram: 4096, disk: 40 };

describe("resize and cold migration", () => {
  const fx = stack({ name: "moves", controller: { resizeConfirmWindowSeconds: 0 }, agents: ({ id }) => [{ host: `mv${id}`, hosts: 3 }] });
  const { env, admin, alice, dir: stateDir, settled, boot } = fx;
  // Servers, operations and moves are read as an admin sees them, with host names (members see host ids).

  test("resize claims the target first, holds both hosts while RESIZED, and confirm releases the source", async () => {
    const s = await boot("grow");
    const source = s.host;
    const before = await assertCapacityExact(env, admin);

    const res = await alice.servers.resizeServer({ id: s.id, flavorId: "m1.medium" });
    assert.equal(res.server!.taskState, TaskState.TASK_STATE_RESIZE_PREP);
    assert.equal(res.server!.status, ServerStatus.SERVER_STATUS_RESIZE);
    assert.equal(res.operation!.action, "resize");
    assert.equal(res.operation!.name, `servers/${s.id}/operations/${encodeURIComponent(res.operation!.requestId)}`);

    const resized = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    assert.notEqual(resized.host, source, "a resize never stays on its host");
    // The source hands the disk over, then the target finishes the move.
    const seen = await history(alice, s.id, (h) => h.includes("RESIZED/UNSPECIFIED"));
    assert.deepEqual(seen.slice(seen.indexOf("ACTIVE/RESIZE_PREP")), ["ACTIVE/RESIZE_PREP", "ACTIVE/RESIZE_MIGRATING", "ACTIVE/RESIZE_FINISH", "RESIZED/UNSPECIFIED"]);
    assert.equal(resized.flavor!.name, "m1.medium");
    assert.equal(resized.vmState, VmState.VM_STATE_RESIZED);
    assert.equal(resized.powerState, PowerState.POWER_STATE_RUNNING);
    const op = (await admin.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal(op.done, true);
    assert.equal(op.progressPercent, 100);

    // Both copies hold capacity: old flavor on the source, new on the target.
    const during = await assertCapacityExact(env, admin);
    assert.deepEqual(during.get(source), { vcpus: before.get(source)!.vcpus, ram: before.get(source)!.ram, disk: before.get(source)!.disk, vms: before.get(source)!.vms });
    const t0 = before.get(resized.host)!;
    assert.deepEqual(during.get(resized.host), { vcpus: t0.vcpus + MEDIUM.vcpus, ram: t0.ram + MEDIUM.ram, disk: t0.disk + MEDIUM.disk, vms: t0.vms + 1 });
    const migs = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.equal(migs.length, 1);
    assert.deepEqual(
      [migs[0]!.type, migs[0]!.status, migs[0]!.sourceHost, migs[0]!.targetHost, migs[0]!.oldFlavor!.name, migs[0]!.newFlavor!.name],
      [MigrationType.MIGRATION_TYPE_RESIZE, MigrationStatus.MIGRATION_STATUS_FINISHED, source, resized.host, "m1.small", "m1.medium"],
    );

    const conf = await alice.servers.confirmResize({ id: s.id });
    assert.equal(conf.server!.taskState, TaskState.TASK_STATE_RESIZE_CONFIRMING);
    const done = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(done.host, resized.host);
    const afterConfirm = await assertCapacityExact(env, admin);
    const s0 = before.get(source)!;
    assert.deepEqual(afterConfirm.get(source), { vcpus: s0.vcpus - SMALL.vcpus, ram: s0.ram - SMALL.ram, disk: s0.disk - SMALL.disk, vms: s0.vms - 1 });
    assert.deepEqual(afterConfirm.get(resized.host), during.get(resized.host));
    const [m] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.equal(m!.status, MigrationStatus.MIGRATION_STATUS_CONFIRMED);

    const actions = (await admin.servers.listServerActions({ serverId: s.id })).actions;
    assert.deepEqual(
      actions.slice(0, 2).map((a) => [a.action, a.events.map((e) => `${e.name}@${e.host}:${e.result}`).join(",")]),
      [
        ["confirm_resize", `compute_confirm_resize@${source}:Success`],
        [
          "resize",
          `schedule@${resized.host}:Success,compute_resize_instance@${source}:Success,compute_finish_resize@${resized.host}:Success`,
        ],
      ],
    );
    // The source's copy is gone; the target runs the server with the new flavor.
    const domains = JSON.parse(await readFile(join(stateDir, source, "fake-domains.json"), "utf8"));
    assert.ok(!JSON.stringify(domains).includes(s.id), "the source no longer has the server");
  });

  test("revert brings the server back to its source with its old flavor and releases the target", async () => {
    const s = await boot("shrinkback");
    const source = s.host;
    const before = await assertCapacityExact(env, admin);
    await alice.servers.resizeServer({ id: s.id, flavorId: "m1.medium" });
    const resized = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    const target = resized.host;

    const rev = await alice.servers.revertResize({ id: s.id });
    assert.equal(rev.server!.status, ServerStatus.SERVER_STATUS_REVERT_RESIZE);
    const back = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(back.host, source);
    assert.equal(back.flavor!.name, "m1.small");
    assert.equal(back.powerState, PowerState.POWER_STATE_RUNNING);
    const afterRevert = await assertCapacityExact(env, admin);
    assert.deepEqual(afterRevert.get(source), before.get(source));
    assert.deepEqual(afterRevert.get(target), before.get(target));
    const [m] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.equal(m!.status, MigrationStatus.MIGRATION_STATUS_REVERTED);
    const revert = (await admin.servers.listServerActions({ serverId: s.id })).actions[0]!;
    assert.equal(revert.action, "revert_resize");
    assert.deepEqual(
      revert.events.map((e) => `${e.name}@${e.host}:${e.result}`),
      [`compute_revert_resize@${target}:Success`, `compute_finish_revert_resize@${source}:Success`],
    );
  });

  test("an admin cold-migrates a stopped server to a named host; it stays stopped", async () => {
    const s = await boot("cold");
    await alice.servers.stopServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    const hosts = (await admin.hypervisors()).map((h) => h.hostname).filter((h) => h !== s.host);
    const target = hosts[0]!;
    const before = await assertCapacityExact(env, admin);

    // Members may migrate, but not choose the host.
    const denied = await alice.servers.migrateServer({ id: s.id, host: target }).catch((e: ServiceError) => e);
    assert.equal((denied as ServiceError).code, status.PERMISSION_DENIED);

    await admin.servers.migrateServer({ id: s.id, host: target });
    const moved = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    assert.equal(moved.host, target);
    assert.equal(moved.powerState, PowerState.POWER_STATE_SHUTDOWN);
    const t0 = before.get(target)!;
    assert.deepEqual((await assertCapacityExact(env, admin)).get(target), { vcpus: t0.vcpus + 1, ram: t0.ram + 2048, disk: t0.disk + 20, vms: t0.vms + 1 });
    await alice.servers.confirmResize({ id: s.id });
    const done = await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.equal(done.vmState, VmState.VM_STATE_STOPPED);
    const [m] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.deepEqual([m!.type, m!.status, m!.targetHost], [MigrationType.MIGRATION_TYPE_MIGRATION, MigrationStatus.MIGRATION_STATUS_CONFIRMED, target]);
    const s0 = before.get(s.host)!;
    assert.deepEqual((await assertCapacityExact(env, admin)).get(s.host), { vcpus: s0.vcpus - 1, ram: s0.ram - 2048, disk: s0.disk - 20, vms: s0.vms - 1 });
  });

  test("a STOPPED server resizes and stays stopped; a reverted cold migration brings it back with capacity exact", async () => {
    const s = await boot("stopped-grow");
    await alice.servers.stopServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    const before = await assertCapacityExact(env, admin);
    await alice.servers.resizeServer({ id: s.id, flavorId: "m1.medium" });
    const resized = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    assert.deepEqual([resized.flavor!.name, resized.powerState], ["m1.medium", PowerState.POWER_STATE_SHUTDOWN]);
    const t0 = before.get(resized.host)!;
    assert.deepEqual((await assertCapacityExact(env, admin)).get(resized.host), { vcpus: t0.vcpus + MEDIUM.vcpus, ram: t0.ram + MEDIUM.ram, disk: t0.disk + MEDIUM.disk, vms: t0.vms + 1 });
    await alice.servers.confirmResize({ id: s.id });
    const grown = await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.deepEqual([grown.vmState, grown.host, grown.flavor!.name], [VmState.VM_STATE_STOPPED, resized.host, "m1.medium"]);

    // Cold-migrate it on, then revert: back on its host, both hosts as before.
    const home = grown.host;
    const atHome = await assertCapacityExact(env, admin);
    await alice.servers.migrateServer({ id: s.id });
    const moved = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    assert.notEqual(moved.host, home);
    const away = await assertCapacityExact(env, admin);
    assert.deepEqual(away.get(home), atHome.get(home), "the source keeps its claim until confirm or revert");
    const m0 = atHome.get(moved.host)!;
    assert.deepEqual(away.get(moved.host), { vcpus: m0.vcpus + MEDIUM.vcpus, ram: m0.ram + MEDIUM.ram, disk: m0.disk + MEDIUM.disk, vms: m0.vms + 1 });
    const rev = await alice.servers.revertResize({ id: s.id });
    assert.equal(rev.server!.taskState, TaskState.TASK_STATE_RESIZE_REVERTING);
    const back = await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.deepEqual([back.host, back.flavor!.name, back.powerState], [home, "m1.medium", PowerState.POWER_STATE_SHUTDOWN]);
    assert.deepEqual(await assertCapacityExact(env, admin), atHome, "every host as before the migration");
    const [m] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.deepEqual([m!.type, m!.status, m!.sourceHost, m!.targetHost], [MigrationType.MIGRATION_TYPE_MIGRATION, MigrationStatus.MIGRATION_STATUS_REVERTED, home, moved.host]);
    const domains = JSON.parse(await readFile(join(stateDir, moved.host, "fake-domains.json"), "utf8"));
    assert.ok(!JSON.stringify(domains).includes(s.id), "the target no longer has it");
  });

  test("bad resize and migrate requests are refused with the right code", async () => {
    const s = await boot("picky");
    const code = async (p: Promise<unknown>) => {
      const e = (await p.then(() => null, (err: ServiceError) => err)) as ServiceError | null;
      assert.ok(e, "the call must fail");
      return { code: e.code, ...decodeStatusDetails(e.metadata) };
    };
    const same = await code(alice.servers.resizeServer({ id: s.id, flavorId: "m1.small" }));
    assert.equal(same.code, status.INVALID_ARGUMENT);
    assert.equal(same.badRequest?.fieldViolations[0]?.field, "flavor_id");
    assert.equal((await code(alice.servers.resizeServer({ id: s.id, flavorId: "" }))).code, status.INVALID_ARGUMENT);
    assert.equal((await code(alice.servers.resizeServer({ id: s.id, flavorId: "m9.huge" }))).code, status.NOT_FOUND);
    assert.equal((await code(admin.servers.migrateServer({ id: s.id, host: "no-such-host" }))).code, status.NOT_FOUND);
    const here = await code(admin.servers.migrateServer({ id: s.id, host: s.host }));
    assert.equal(here.badRequest?.fieldViolations[0]?.field, "host");
    const notResized = await code(alice.servers.confirmResize({ id: s.id }));
    assert.equal(notResized.code, status.FAILED_PRECONDITION);
    assert.equal(notResized.errorInfo?.metadata["vm_state"], "ACTIVE");
    assert.equal((await code(alice.servers.revertResize({ id: s.id }))).code, status.FAILED_PRECONDITION);
  });

  test("a resize that fits nowhere fails its operation with NO_VALID_HOST and leaves the server as it was", async () => {
    const s = await boot("toobig");
    await admin.flavors.createFlavor({ flavor: { id: "huge", name: "huge", vcpus: 4, ramMb: 65536, diskGb: 10, description: "", extraSpecs: {} } });
    const before = await assertCapacityExact(env, admin);
    const res = await alice.servers.resizeServer({ id: s.id, flavorId: "huge" });
    const op = (await admin.operations.waitOperation({ name: res.operation!.name, timeoutSeconds: 20 })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    assert.equal(op.error!.code, status.RESOURCE_EXHAUSTED);
    assert.match(op.error!.message, /No valid host was found: 3 hosts considered; removed by (retry: 1, ram: 2|ram: 2, retry: 1)/);
    const after = await admin.servers.getServer({ id: s.id });
    assert.equal(after.server!.status, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(after.server!.host, s.host);
    assert.equal(after.server!.flavor!.name, "m1.small");
    assert.equal(after.server!.fault!.code, "NO_VALID_HOST");
    assert.deepEqual(await assertCapacityExact(env, admin), before);
    const [m] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.equal(m!.status, MigrationStatus.MIGRATION_STATUS_ERROR);
  });

  test("deleting a RESIZED server destroys both copies and releases both hosts", async () => {
    const s = await boot("gone");
    const before = await assertCapacityExact(env, admin);
    await alice.servers.resizeServer({ id: s.id, flavorId: "m1.medium" });
    const resized = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    await alice.servers.deleteServer({ id: s.id });
    await waitServers(admin, [s.id], (x) => x.status === ServerStatus.SERVER_STATUS_DELETED, "DELETED");
    const after = await assertCapacityExact(env, admin);
    const s0 = before.get(s.host)!;
    assert.deepEqual(after.get(s.host), { vcpus: s0.vcpus - 1, ram: s0.ram - 2048, disk: s0.disk - 20, vms: s0.vms - 1 });
    assert.deepEqual(after.get(resized.host), before.get(resized.host));
    const allocs = await env.sql<{ n: number }>(
      "SELECT COUNT(*) AS n FROM allocations WHERE instance_uuid = ? OR instance_uuid IN (SELECT id FROM migrations WHERE instance_uuid = ?)",
      [s.id, s.id],
    );
    assert.equal(Number(allocs[0]!.n), 0);
    const del = (await admin.servers.listServerActions({ serverId: s.id })).actions[0]!;
    assert.deepEqual(new Set(del.events.map((e) => e.host)), new Set([s.host, resized.host]));
  });
});
