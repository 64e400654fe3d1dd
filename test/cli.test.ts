/**
 * The `novamesh` command against a live stack (no mocks): create with
 * --wait, the output formats, and what a user sees when something fails
 * (the status, the bad field, NO_VALID_HOST's filter counts) with the exit
 * code that tells the cases apart.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { REPO } from "./agents.js";
import { stack } from "./stack.js";

describe("the novamesh command", () => {
  const fx = stack({ name: "cli", members: ["alice"], agents: ({ id }) => [{ host: `cli${id}` }] });
  const { env, admin, alice, imageId } = fx;

  /** Runs `novamesh args` as alice (or with `token`); resolves its exit code and output. */
  const novamesh = (args: string[], token = alice.token) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [join(REPO, "cli/novamesh.mjs"), ...args],
        { env: { ...process.env, NOVAMESH_URL: env.address(fx.ctl), NOVAMESH_TOKEN: token, NOVAMESH_PLAINTEXT: "1" }, timeout: 60_000 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
      );
    });

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
    assert.match(none.stdout, /NO_VALID_HOST: No valid host was found: 1 hosts considered; removed by vcpu: 1/);
    assert.match(none.stderr, /filter\.vcpu: 1/);

    const usage = await novamesh(["server", "create", "x", "--image", imageId]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /required option '--flavor <id>' not specified/);
    const noToken = await novamesh(["server", "list"], "");
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /no token: give --token or set NOVAMESH_TOKEN/);
    const badToken = await novamesh(["server", "list"], "not-a-token");
    assert.equal(badToken.code, 1);
    assert.match(badToken.stderr, /UNAUTHENTICATED/);
  });
});
