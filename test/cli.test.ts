/**
 * The `novamesh` command against a live stack (no mocks): create with
 * --wait, the output formats, and what a user sees when something fails
 * (the status, the bad field, NO_VALID_HOST's filter counts) with the exit
 * code that tells the cases apart.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { REPO, fakeVolumeHost } from "./agents.js";
import { stack } from "./stack.js";

describe("the novamesh command", () => {
  const fx = stack({ name: "cli", members: ["alice"], agents: ({ id }) => [{ host: `cli${id}` }, fakeVolumeHost(`cliv${id}`)] });
  const { env, admin, alice, imageId } = fx;

  /** Runs `novamesh args` as alice (or with `token`, or the environment `extra` sets); resolves its exit code and output. */
  const novamesh = (args: string[], token = alice.token, extra: Record<string, string | undefined> = {}) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [join(REPO, "cli/novamesh.mjs"), ...args],
        { env: { ...process.env, NOVAMESH_URL: env.address(fx.ctl), NOVAMESH_TOKEN: token, NOVAMESH_PLAINTEXT: "1", ...extra }, timeout: 60_000 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
      );
    });
  const asAdmin = (args: string[]) => novamesh(args, env.adminToken);

  test("server create --wait follows the build to ACTIVE and prints the server; show, list and quota print tables, JSON, YAML and values", async () => {
    const made = await novamesh(["server", "create", "cli-web", "--flavor", "m1.small", "--image", imageId, "--wait"]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /│ status\s+│ ACTIVE\s+│/);
    assert.match(made.stderr, /: BUILD \(SCHEDULING\)\n|: BUILD \(SPAWNING\)\n/, "progress while it builds");
    assert.match(made.stderr, /: ACTIVE\n$/);
    const id = /│ id\s+│ ([0-9a-f-]{36}) /.exec(made.stdout)![1]!;
    assert.equal((await alice.servers.getServer({ id })).server!.name, "cli-web");

    const shown = await novamesh(["-f", "json", "server", "show", id]);
    assert.equal(shown.code, 0, shown.stderr);
    const json = JSON.parse(shown.stdout);
    assert.deepEqual([json.id, json.name, json.status, json.flavor], [id, "cli-web", "ACTIVE", "m1.small"]);
    const names = await novamesh(["server", "list", "-f", "value", "-c", "name", "-c", "status"]);
    assert.equal(names.stdout, "cli-web ACTIVE\n");
    const yaml = await novamesh(["-f", "yaml", "-c", "resource", "-c", "limit", "quota", "show"]);
    assert.match(yaml.stdout, /- resource: instances\n {2}limit: -1\n/);
    const flavors = await novamesh(["flavor", "list", "-f", "value", "-c", "name"]);
    assert.ok(flavors.stdout.split("\n").includes("m1.small"), flavors.stdout);
    const badColumn = await novamesh(["server", "list", "-c", "colour"]);
    assert.equal(badColumn.code, 2);
    assert.match(badColumn.stderr, /no column "colour"/);
  });

  test("server actions with --wait, the console log and the action list; key pairs made with their private key in a file", async () => {
    const made = await novamesh(["server", "create", "cli-act", "--flavor", "m1.small", "--image", imageId, "--wait", "-f", "value", "-c", "id"]);
    assert.equal(made.code, 0, made.stderr);
    const id = made.stdout.trim();
    for (const [args, status] of [
      [["stop", id], "SHUTOFF"],
      [["start", id], "ACTIVE"],
      [["reboot", "--hard", id], "ACTIVE"],
      [["pause", id], "PAUSED"],
      [["unpause", id], "ACTIVE"],
    ] as const) {
      const r = await novamesh(["server", ...args, "--wait", "-f", "json"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).status, status, args.join(" "));
    }
    const actions = await novamesh(["server", "action-list", id, "-f", "value", "-c", "action"]);
    assert.deepEqual(actions.stdout.trim().split("\n"), ["unpause", "pause", "reboot", "start", "stop", "create"]);
    const log = await novamesh(["server", "console-log", id, "--lines", "5"]);
    assert.equal(log.code, 0, log.stderr);
    assert.equal((await novamesh(["server", "console-log", id, "--lines", "0"])).code, 2);

    const keyFile = join(fx.dir, "cli-key");
    const key = await novamesh(["keypair", "create", "cli-key", "--private-key", keyFile, "-f", "json"]);
    assert.equal(key.code, 0, key.stderr);
    assert.match(JSON.parse(key.stdout).fingerprint, /^SHA256:/);
    assert.match(readFileSync(keyFile, "utf8"), /^-----BEGIN OPENSSH PRIVATE KEY-----/);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const again = await novamesh(["keypair", "create", "other", "--private-key", keyFile]);
    assert.deepEqual([again.code, /exists/.test(again.stderr)], [2, true], "a private key is never written over another");
    assert.equal((await novamesh(["keypair", "list", "-f", "value", "-c", "name"])).stdout, "cli-key\n");
    assert.equal((await novamesh(["keypair", "delete", "cli-key"])).code, 0);
    assert.equal((await novamesh(["keypair", "delete", "cli-key"])).code, 3);
  });

  test("failures: the status and the field named, NO_VALID_HOST's filter counts, not found and usage mistakes by exit code", async () => {
    const unknown = await novamesh(["server", "create", "x", "--flavor", "no-such", "--image", imageId]);
    assert.equal(unknown.code, 3, "not found");
    assert.match(unknown.stderr, /NOT_FOUND: flavor "no-such" not found/);
    const bad = await novamesh(["server", "create", "x", "--flavor", "m1.small", "--image", "not-a-uuid"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /INVALID_ARGUMENT: .*\n.*field image_id: /);

    await admin.flavors.createFlavor({ flavor: { id: "cli.huge", name: "cli.huge", vcpus: 1024, ramMb: 64, diskGb: 1, description: "", extraSpecs: {} } });
    const none = await novamesh(["server", "create", "too-big", "--flavor", "cli.huge", "--image", imageId, "--wait"]);
    assert.equal(none.code, 1, "a build that ends in ERROR fails the command");
    assert.match(none.stdout, /│ status\s+│ ERROR\s+│/);
    assert.match(none.stdout, /NO_VALID_HOST: No valid host was found: 2 hosts considered; removed by vcpu: 2/);
    assert.match(none.stderr, /filter\.vcpu: 2/);

    const usage = await novamesh(["server", "create", "x", "--image", imageId]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /required option '--flavor <id>' not specified/);
    const noToken = await novamesh(["server", "list"], "");
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /no token: give --token, set NOVAMESH_TOKEN/);
    const badToken = await novamesh(["server", "list"], "not-a-token");
    assert.equal(badToken.code, 1);
    assert.match(badToken.stderr, /UNAUTHENTICATED/);
  });

  test("image create --file uploads 20 MiB with progress and a matching checksum; image save downloads it checked", async () => {
    const file = join(fx.dir, "cli-20m.img");
    const bytes = randomBytes(20 * 1024 * 1024);
    writeFileSync(file, bytes);
    const sha = createHash("sha256").update(bytes).digest("hex");
    const up = await novamesh(["image", "create", "cli-upload", "--file", file, "--disk-format", "raw", "-f", "json"]);
    assert.equal(up.code, 0, up.stderr);
    const tenths = [...up.stderr.matchAll(/^uploading (\d+)% \(/gm)].map((m) => Number(m[1]));
    assert.deepEqual(tenths, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100].filter((t) => tenths.includes(t)), "progress rises");
    assert.ok(tenths.length >= 5 && tenths.at(-1) === 100, up.stderr);
    assert.match(up.stderr, new RegExp(`uploaded 20\\.0 MiB, SHA-256 ${sha} matches`));
    const image = JSON.parse(up.stdout);
    assert.deepEqual([image.status, image.size_bytes, image.checksum, image.visibility], ["ACTIVE", 20 * 1024 * 1024, sha, "PRIVATE"]);
    const listed = await novamesh(["image", "list", "-f", "value", "-c", "name", "-c", "status"]);
    assert.ok(listed.stdout.split("\n").includes("cli-upload ACTIVE"), listed.stdout);

    const saved = join(fx.dir, "cli-saved.img");
    const down = await novamesh(["image", "save", image.id, "--file", saved]);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stderr, /downloading 100% \(20\.0 MiB of 20\.0 MiB\)/);
    assert.ok(readFileSync(saved).equals(bytes), "the saved file has the uploaded bytes");
    const over = await novamesh(["image", "save", image.id, "--file", saved]);
    assert.deepEqual([over.code, /exists/.test(over.stderr)], [2, true], "a file is never written over");
    const missing = await novamesh(["image", "create", "x", "--file", join(fx.dir, "nope.img")]);
    assert.deepEqual([missing.code, /--file .*no such file/.test(missing.stderr)], [2, true]);
    assert.equal((await novamesh(["image", "delete", image.id])).code, 0);
    assert.equal((await novamesh(["image", "show", image.id])).code, 3);
  });

  test("operations, hosts, hypervisors, aggregates, zones, tokens and placement explain, as an operator uses them", async () => {
    const made = await novamesh(["server", "create", "cli-ops", "--flavor", "m1.small", "--image", imageId, "--wait", "-f", "value", "-c", "id"]);
    assert.equal(made.code, 0, made.stderr);
    const id = made.stdout.trim();
    assert.equal((await novamesh(["server", "stop", id])).code, 0);
    const ops = JSON.parse((await novamesh(["operation", "list", "--server", id, "-f", "json"])).stdout) as { name: string; action: string; state: string }[];
    assert.deepEqual(ops.map((o) => o.action), ["stop", "create"]);
    const waited = await novamesh(["operation", "wait", ops[0]!.name, "-f", "json"]);
    assert.equal(waited.code, 0, waited.stderr);
    assert.equal(JSON.parse(waited.stdout).state, "SUCCEEDED");
    assert.match(waited.stderr, /: SUCCEEDED\n$/);
    const failedOps = await novamesh(["operation", "list", "--state", "sideways"]);
    assert.deepEqual([failedOps.code, /--state sideways: choose one of pending, running, succeeded, failed, cancelled/.test(failedOps.stderr)], [2, true]);

    const hosts = (await asAdmin(["host", "list", "-f", "value", "-c", "host", "-c", "state"])).stdout.trim().split("\n").sort();
    assert.deepEqual(hosts, [...fx.hosts].sort().map((h) => `${h} UP`));
    const computeHost = fx.hosts.find((h) => h.startsWith("cli") && !h.startsWith("cliv"))!;
    const disabled = await asAdmin(["host", "disable", computeHost, "--reason", "maintenance", "-f", "json"]);
    assert.deepEqual([JSON.parse(disabled.stdout).status, JSON.parse(disabled.stdout).disabled_reason], ["DISABLED", "maintenance"]);
    const explained = await asAdmin(["placement", "explain", "--flavor", "m1.small", "--image", imageId, "-f", "json"]);
    const why = JSON.parse(explained.stdout);
    assert.equal(why.chosen_host, "", "no enabled host has room");
    assert.ok(why.hosts.find((h: { host: string }) => h.host === computeHost).failed.some((f: string) => /^compute: /.test(f)), explained.stdout);
    assert.equal((await asAdmin(["host", "enable", computeHost])).code, 0);
    const table = await asAdmin(["placement", "explain", "--flavor", "m1.small", "--image", imageId]);
    assert.match(table.stderr, new RegExp(`chosen: ${computeHost} of 2 hosts`));
    const hv = JSON.parse((await asAdmin(["hypervisor", "show", computeHost, "-f", "json"])).stdout);
    const onHost = (await asAdmin(["server", "list", "--all-projects", "--host", computeHost, "-f", "value", "-c", "id"])).stdout.trim().split("\n");
    assert.ok(onHost.includes(id));
    // Every server here is an m1.small (1 vCPU, 2048 MiB); the stopped one still holds its share.
    assert.deepEqual([hv.running_vms, hv.vcpus_used, hv.memory_mb_used], [onHost.length, onHost.length, 2048 * onHost.length]);
    assert.equal((await asAdmin(["hypervisor", "show", "no-such-host"])).code, 3);
    assert.equal((await novamesh(["host", "list"])).code, 1, "a member may not list hosts");

    const agg = JSON.parse((await asAdmin(["aggregate", "create", "cli-rack", "--zone", "cli-zone", "-f", "json"])).stdout);
    assert.equal((await asAdmin(["aggregate", "add-host", agg.id, computeHost])).code, 0);
    const zones = await asAdmin(["availability-zone", "list", "-f", "json"]);
    assert.deepEqual(JSON.parse(zones.stdout).find((z: { name: string }) => z.name === "cli-zone")?.hosts, [computeHost]);
    assert.equal((await asAdmin(["aggregate", "remove-host", agg.id, computeHost])).code, 0);
    assert.equal((await asAdmin(["aggregate", "delete", agg.id])).code, 0);

    const token = JSON.parse((await asAdmin(["token", "create", "--role", "member", "--project", "alice", "--description", "cli", "--ttl", "600", "-f", "json"])).stdout);
    assert.match(token.secret, /.{20,}/);
    assert.equal((await novamesh(["server", "show", id], token.secret)).code, 0, "the new token works");
    assert.ok((await asAdmin(["token", "list", "--project", "alice", "-f", "value", "-c", "id"])).stdout.includes(token.id));
    assert.equal((await asAdmin(["token", "delete", token.id])).code, 0);
    assert.equal((await novamesh(["server", "show", id], token.secret)).code, 1, "a deleted token is refused");
    const badRole = await asAdmin(["token", "create", "--role", "king"]);
    assert.deepEqual([badRole.code, /--role king: choose one of admin, member, agent/.test(badRole.stderr)], [2, true]);
  });

  test("networks, ports, volumes with --wait, server metadata and tags, from the command line", async () => {
    const net = JSON.parse((await asAdmin(["network", "create", "cli-net", "--project", "alice", "-f", "json"])).stdout);
    assert.equal(net.segmentation, "VXLAN");
    const sub = await novamesh(["subnet", "create", "cli-sub", "--network", net.id, "--cidr", "10.77.0.0/24", "--pool", "10.77.0.10-10.77.0.20", "-f", "json"]);
    assert.equal(sub.code, 0, sub.stderr);
    assert.deepEqual(JSON.parse(sub.stdout).allocation_pools, [{ start: "10.77.0.10", end: "10.77.0.20" }]);
    const port = JSON.parse((await novamesh(["port", "create", "cli-port", "--network", net.id, "--fixed-ip", "10.77.0.15", "-f", "json"])).stdout);
    assert.deepEqual(port.fixed_ips.map((f: { ip_address: string }) => f.ip_address), ["10.77.0.15"]);
    assert.match((await novamesh(["port", "list", "--network", net.id])).stdout, /10\.77\.0\.15/);
    assert.equal((await novamesh(["port", "delete", port.id])).code, 0);
    const badPool = await novamesh(["subnet", "create", "x", "--network", net.id, "--cidr", "10.78.0.0/24", "--pool", "10.78.0.9"]);
    assert.deepEqual([badPool.code, /--pool 10\.78\.0\.9: give start-end/.test(badPool.stderr)], [2, true]);
    assert.equal((await novamesh(["subnet", "delete", JSON.parse(sub.stdout).id])).code, 0);
    assert.equal((await asAdmin(["network", "delete", net.id])).code, 0);
    assert.equal((await novamesh(["network", "show", net.id])).code, 3);

    const vol = await novamesh(["volume", "create", "cli-vol", "--size", "1", "--wait", "-f", "json"]);
    assert.equal(vol.code, 0, vol.stderr);
    const volume = JSON.parse(vol.stdout);
    assert.deepEqual([volume.status, volume.size_gb], ["AVAILABLE", 1]);
    assert.match(vol.stderr, /: SUCCEEDED\n/);
    const extended = await novamesh(["volume", "extend", volume.id, "2", "--wait"]);
    assert.equal(extended.code, 0, extended.stderr);
    assert.equal(JSON.parse((await novamesh(["volume", "show", volume.id, "-f", "json"])).stdout).size_gb, 2);
    assert.equal((await novamesh(["volume", "extend", volume.id, "two"])).code, 2);

    const made = await novamesh(["server", "create", "cli-attrs", "--flavor", "m1.small", "--image", imageId, "--property", "role=web", "--tag", "blue", "--wait", "-f", "value", "-c", "id"]);
    assert.equal(made.code, 0, made.stderr);
    const id = made.stdout.trim();
    const attached = await novamesh(["server", "add-volume", id, volume.id, "--wait"]);
    assert.equal(attached.code, 0, attached.stderr);
    assert.equal(JSON.parse((await novamesh(["volume", "show", volume.id, "-f", "json"])).stdout).status, "IN_USE");
    assert.equal((await novamesh(["server", "remove-volume", id, volume.id, "--wait"])).code, 0);
    assert.equal((await novamesh(["volume", "delete", volume.id, "--wait"])).code, 0);
    assert.equal((await novamesh(["volume", "show", volume.id])).code, 3);

    assert.equal((await novamesh(["server", "set", id, "--name", "cli-renamed"])).code, 0);
    assert.equal((await novamesh(["server", "set-property", id, "tier=1"])).code, 0);
    assert.equal((await novamesh(["server", "tag", id, "green", "red"])).code, 0);
    const shown = JSON.parse((await novamesh(["server", "show", id, "-f", "json"])).stdout);
    assert.deepEqual([shown.name, shown.metadata, shown.tags], ["cli-renamed", { role: "web", tier: "1" }, ["green", "red"]]);
    assert.equal((await novamesh(["server", "list", "--tag", "green", "-f", "value", "-c", "name"])).stdout, "cli-renamed\n");
    assert.equal((await novamesh(["server", "set", id])).code, 2, "set with nothing to change is a usage mistake");
  });

  test("a named cloud from the clouds file, and bash completion made from the commands", async () => {
    const clouds = join(fx.dir, "clouds.yaml");
    writeFileSync(join(fx.dir, "alice-token"), `${alice.token}\n`);
    writeFileSync(clouds, `clouds:\n  lab:\n    url: ${env.address(fx.ctl)}\n    token_file: alice-token\n    plaintext: true\n  typo:\n    urll: x\n`);
    const bare = { NOVAMESH_URL: undefined, NOVAMESH_TOKEN: undefined, NOVAMESH_PLAINTEXT: undefined, NOVAMESH_CLOUDS: clouds };
    const viaCloud = await novamesh(["--os-cloud", "lab", "quota", "show", "-f", "value", "-c", "resource"], "", bare);
    assert.equal(viaCloud.code, 0, viaCloud.stderr);
    assert.ok(viaCloud.stdout.split("\n").includes("instances"));
    const viaEnv = await novamesh(["quota", "show", "-f", "value", "-c", "resource"], "", { ...bare, NOVAMESH_CLOUD: "lab" });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    const typo = await novamesh(["--os-cloud", "typo", "server", "list"], "", bare);
    assert.deepEqual([typo.code, /clouds\.typo\.urll is not a setting/.test(typo.stderr)], [2, true]);
    const unknown = await novamesh(["--os-cloud", "nope", "server", "list"], "", bare);
    assert.deepEqual([unknown.code, /no cloud "nope" in .*\(clouds: lab, typo\)/.test(unknown.stderr)], [2, true]);

    const script = await novamesh(["completion", "bash"]);
    assert.equal(script.code, 0, script.stderr);
    const complete = (words: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile(
          "bash",
          ["-c", `source /dev/stdin <<'EOF'\n${script.stdout}\nEOF\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _novamesh; echo "\${COMPREPLY[*]}"`],
          (err, stdout) => (err ? reject(err) : resolve(stdout.trim())),
        ),
      );
    assert.equal(await complete(["novamesh", "--os-cloud", "lab", "server", "cr"]), "create");
    assert.equal(await complete(["novamesh", "volume", "snap"]), "");
    assert.equal(await complete(["novamesh", "volume-snap"]), "volume-snapshot");
    assert.match(await complete(["novamesh", "server", "create", "web", "--fl"]), /^--flavor$/);
    assert.equal((await novamesh(["completion", "fish"])).code, 2);
  });
});
