import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { Image, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { Direction } from "../gen/novamesh/network/v1/security_group.js";
import { VolumeStatus } from "../gen/novamesh/volume/v1/volume.js";
import type { Example } from "../scripts/readme-examples.js";
import { readmeExamples, runExamples } from "../scripts/readme-examples.js";
import { seedPublicNetwork } from "../scripts/seed-network.js";
import { stack } from "./stack.js";

/**
 * The README's grpcurl examples, run through a generic reflection client
 * (grpcurl itself cannot be installed here), over TLS as the README says:
 * the controller serves certificates made by scripts/certs.sh into the
 * stack's `.state/tls`, and the lines' `-cacert .state/tls/ca.pem` is read
 * from there.
 */
describe("the README's grpcurl examples, through server reflection", () => {
  // One fake host, so web-1 is placed and gets its address on "public"; it serves volumes too, as the all-in-one's agent does.
  const fx = stack({
    name: "readme",
    members: [],
    images: [],
    tls: true,
    agents: ({ id }) => [{ host: `readme${id}`, driverArgs: ["--driver", "fake", "--vcpus", "8", "--memory-mb", "16384", "--disk-gb", "200", "--volume-backend", "fake", "--volume-pools", "local:20G"] }],
    removeDir: true,
  });
  const { env, admin } = fx;
  let examples: Example[];

  before(async () => {
    examples = await readmeExamples();
    const create = examples.find((e) => e.target.endsWith("/CreateServer"));
    assert.ok(create?.body, "the README has a CreateServer example");
    await admin.images.registerImage({
      image: Image.fromPartial({ id: String(create.body.image_id), name: "cirros-0.6.2", visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC }),
    });
    // As the all-in-one does: the shared flat network "public".
    await seedPublicNetwork(admin.networks.raw, admin.networks.metadata());
  });

  test("every example runs and does what it says", async () => {
    assert.ok(examples.length >= 8, `found ${examples.length} examples`);
    assert.ok(examples.every((e) => e.tls.ca === ".state/tls/ca.pem" && !e.tls.plaintext), "every example verifies the controller with the all-in-one's CA");
    const r = await runExamples(examples, env.address(fx.ctl), env.adminToken, fx.dir);
    for (const s of ["novamesh.compute.v1.ServerService", "novamesh.compute.v1.FlavorService", "novamesh.compute.v1.SchedulerService", "novamesh.compute.v1.ServerGroupService", "grpc.health.v1.Health"]) {
      assert.ok(r.services.includes(s), `list shows ${s}`);
    }
    assert.deepEqual(r.described, ["novamesh.compute.v1.ServerService", "novamesh.compute.v1.Server"]);
    assert.deepEqual(r.streamed, ["WatchServers"]);
    assert.deepEqual(r.alreadyThere, [], "on a fresh stack every create makes something new");
    // The watch sends the servers as they are first: web-1, created above.
    const watched = r.responses.get("WatchServers") as { events: Array<{ initial: boolean; server: { name: string } }> };
    // Later events may follow (placement, the build): they are changes, not initial.
    const seen = watched.events.map((e) => [e.initial === true, e.server.name]);
    assert.deepEqual(seen[0], [true, "web-1"]);
    assert.deepEqual(seen.slice(1), seen.slice(1).map(() => [false, "web-1"]));
    const flavors = r.responses.get("ListFlavors") as { flavors: Array<{ name: string }> };
    assert.deepEqual(flavors.flavors.map((f) => f.name), ["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"]);
    type CreatedServer = { server: { id: string; name: string; status: string; key_name: string; config_drive: boolean } };
    const [created, web2] = r.calls.filter((c) => c.method === "CreateServer").map((c) => c.response as CreatedServer);
    assert.ok(created && web2, "the README creates web-1, then web-2");
    assert.equal(created.server.name, "web-1");
    assert.equal(created.server.status, "SERVER_STATUS_BUILD");
    const listed = r.calls.find((c) => c.method === "ListServers")!.response as { servers: Array<{ id: string }> };
    assert.deepEqual(listed.servers.map((s) => s.id), [created!.server.id]);
    const token = r.responses.get("CreateToken") as { secret: string; token: { project_id: string; role: string } };
    assert.equal(token.token.project_id, "demo");
    assert.equal(token.token.role, "ROLE_MEMBER");
    assert.ok(token.secret.length > 20);
    assert.ok(r.responses.has("ListServices") && r.responses.has("ListHypervisors"));
    const pools = r.responses.get("ListVolumePools") as { pools: Array<{ host: string; name: string; total_bytes: string }> };
    assert.deepEqual(pools.pools.map((p) => [p.host, p.name, p.total_bytes]), [[fx.hosts[0], "local", String(20 * 1024 ** 3)]]);
    // The volume section: made, waited for, listed, attached to web-1.
    const volumeId = r.exported.get("VOL") ?? "";
    const volumes = r.responses.get("ListVolumes") as { volumes: Array<{ id: string; name: string; size_gb: number; status: string }> };
    assert.deepEqual(volumes.volumes.map((v) => [v.id, v.name, v.size_gb, v.status]), [[volumeId, "data-1", 1, "VOLUME_STATUS_AVAILABLE"]]);
    assert.equal(r.exported.get("SERVER"), created!.server.id);
    const attached = r.responses.get("AttachVolume") as { server: { task_state: string }; operation: { name: string } };
    assert.equal(attached.operation.name, `servers/${created!.server.id}/operations/readme-attach-data-1`);
    // Then grown to 2 GiB while attached, by an operation of web-1 (the last one waited for).
    const grown = r.responses.get("ExtendVolume") as { operation: { name: string; action: string } };
    assert.deepEqual([grown.operation.name, grown.operation.action], [`servers/${created!.server.id}/operations/readme-grow-data-1`, "extend_volume"]);
    const waits = r.calls.filter((c) => c.method === "WaitOperation").map((c) => c.response as { operation: { name: string; state: string } });
    const waited = waits.find((w) => w.operation.name === grown.operation.name);
    assert.equal(waited?.operation.state, "OPERATION_STATE_SUCCEEDED");
    const inUse = (await admin.volumes.getVolume({ id: volumeId })).volume!;
    assert.deepEqual([inUse.status, inUse.sizeGb, inUse.attachments.map((a) => [a.serverId, a.device])], [VolumeStatus.VOLUME_STATUS_IN_USE, 2, [[created!.server.id, "vdb"]]]);
    const attach = (await admin.servers.listServerActions({ serverId: created!.server.id })).actions.find((a) => a.action === "attach_volume");
    assert.deepEqual(attach?.events.map((e) => `${e.name}:${e.result}`), ["volume_export:Success", "compute_attach_volume:Success"], "the attach before it went through");
    assert.ok(r.responses.has("GetConsoleOutput"));
    // The dry run considers the one host and chooses it.
    const explained = r.responses.get("ExplainPlacement") as { algorithm: string; chosen_host?: string; hosts?: unknown[] };
    assert.equal(explained.algorithm, "filter-weigh");
    assert.equal(explained.chosen_host ?? "", fx.hosts[0]);
    assert.ok(r.responses.has("ListAvailabilityZones"));
    // The network section: "public" listed, web-1's address on it, the default group's two new rules.
    const networks = r.responses.get("ListNetworks") as { networks: Array<{ name: string; shared: boolean; segmentation: string }> };
    assert.deepEqual(networks.networks.map((n) => [n.name, n.shared, n.segmentation]), [["public", true, "SEGMENTATION_FLAT"]]);
    assert.match(r.exported.get("WEB1") ?? "", /^10\.42\.0\.(\d+)$/);
    const groups = r.responses.get("ListSecurityGroups") as { security_groups: Array<{ id: string; name: string }> };
    assert.equal(r.exported.get("SG"), groups.security_groups.find((g) => g.name === "default")?.id);
    const rules = (await admin.securityGroups.getSecurityGroup({ id: r.exported.get("SG")! })).securityGroup!.rules;
    const ingress = rules.filter((x) => x.direction === Direction.DIRECTION_INGRESS && !x.remoteGroupId).map((x) => [x.protocol, x.portRangeMin ?? null, x.portRangeMax ?? null]);
    assert.deepEqual(ingress, [["icmp", null, null], ["tcp", 22, 22]]);
    // The quota section: demo's own limits, then what it holds; a key pair made, and web-2 built with it, user data and a config drive.
    const set = r.responses.get("SetProjectLimits") as { project_id: string; limits: Array<{ resource: string; limit: string; source: string }> };
    assert.deepEqual(set.limits.filter((l) => l.source === "LIMIT_SOURCE_PROJECT").map((l) => [l.resource, l.limit]), [["instances", "5"], ["cores", "10"]]);
    const limits = r.responses.get("GetLimits") as { project_id: string; limits: Array<{ resource: string; in_use: string }> };
    assert.equal(limits.project_id, "demo");
    assert.ok(limits.limits.every((l) => l.in_use === "0"), "demo holds nothing yet");
    const key = r.responses.get("CreateKeypair") as { keypair: { name: string; fingerprint: string }; private_key: string };
    assert.equal(key.keypair.name, "readme-key");
    assert.match(key.private_key, /^-----BEGIN OPENSSH PRIVATE KEY-----/);
    assert.deepEqual([web2!.server.name, web2!.server.key_name, web2!.server.config_drive], ["web-2", "readme-key", true]);
    assert.equal(r.exported.get("WEB2"), web2!.server.id);
    assert.equal(waits.at(-1)?.operation.state, "OPERATION_STATE_SUCCEEDED", "web-2 was built");
    const ops = r.responses.get("ListOperations") as { operations: Array<{ name: string; action: string }> };
    assert.deepEqual(
      ops.operations.map((o) => [o.name, o.action]),
      [[`servers/${created!.server.id}/operations/readme-web-1`, "create"]],
    );
  });
});
