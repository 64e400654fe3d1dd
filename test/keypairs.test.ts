/**
 * Key pairs end to end: imported keys checked and fingerprinted as
 * ssh-keygen does, generated ones usable by ssh-keygen, per project, under
 * the key_pairs quota, and given to servers by name.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { failure } from "./harness.js";
import { stack } from "./stack.js";

describe("key pairs", () => {
  const fx = stack({
    name: "keypairs",
    members: ["alice", "bob"],
    agents: ({ id }) => [{ host: `kp${id}`, capacity: { vcpus: 64, memoryMb: 65536, diskGb: 1000 } }],
    removeDir: true,
  });
  const { admin, alice, bob, imageId, dir } = fx;

  /** A key made by ssh-keygen, and its fingerprint as ssh-keygen prints it. */
  function sshKeygen(name: string, type = "ed25519", bits?: number): { pub: string; fingerprint: string } {
    const file = join(dir, name);
    execFileSync("ssh-keygen", ["-q", "-t", type, ...(bits ? ["-b", String(bits)] : []), "-N", "", "-C", `${name}@test`, "-f", file]);
    return { pub: readFileSync(`${file}.pub`, "utf8"), fingerprint: execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", `${file}.pub`]).toString().split(" ")[1]! };
  }

  test("an imported key keeps its text and gets ssh-keygen's fingerprint; a generated one's private key is shown once and works with ssh-keygen", async () => {
    const k = sshKeygen("laptop");
    const imported = await alice.keypairs.createKeypair({ name: "laptop", publicKey: k.pub });
    assert.equal(imported.privateKey, "", "no private key for an imported key");
    assert.deepEqual([imported.keypair!.type, imported.keypair!.publicKey, imported.keypair!.fingerprint], ["ssh-ed25519", k.pub.trim(), k.fingerprint]);

    const made = await alice.keypairs.createKeypair({ name: "made by the cloud", publicKey: "" });
    assert.match(made.privateKey, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    const file = join(dir, "made.key");
    writeFileSync(file, made.privateKey, { mode: 0o600 });
    const derived = execFileSync("ssh-keygen", ["-y", "-f", file]).toString().trim().split(" ").slice(0, 2).join(" ");
    assert.equal(derived, made.keypair!.publicKey.split(" ").slice(0, 2).join(" "));
    const again = (await alice.keypairs.getKeypair({ name: "made by the cloud" })).keypair!;
    assert.deepEqual(again, made.keypair, "the stored key pair, without any private key");

    assert.deepEqual((await alice.keypairs.listKeypairs({})).keypairs.map((x) => x.name), ["laptop", "made by the cloud"]);
    assert.deepEqual((await bob.keypairs.listKeypairs({})).keypairs, [], "another project's key pairs are not listed");
    assert.equal((await failure(bob.keypairs.getKeypair({ name: "laptop" }))).code, status.NOT_FOUND);
    // The same name in another project is another key pair.
    await bob.keypairs.createKeypair({ name: "laptop", publicKey: sshKeygen("bob-laptop", "rsa").pub });
  });

  test("bad input names the field: a malformed or short key, a bad name, a taken name", async () => {
    const cases: [string, string, string, RegExp][] = [
      ["k1", "ssh-ed25519 AAAA", "public_key", /truncated|32 bytes/],
      ["k2", "-----BEGIN PUBLIC KEY-----", "public_key", /key type must be one of/],
      ["k3", sshKeygen("short", "rsa", 1024).pub, "public_key", /too short/],
      ["bad/name", "", "name", /letters, digits/],
      ["", "", "name", /must not be empty/],
    ];
    for (const [name, publicKey, field, why] of cases) {
      const f = await failure(alice.keypairs.createKeypair({ name, publicKey }));
      assert.deepEqual([f.code, f.fields], [status.INVALID_ARGUMENT, [field]], `${name}: ${f.message}`);
      assert.match(f.message, why);
    }
    await alice.keypairs.createKeypair({ name: "twice", publicKey: "" });
    assert.equal((await failure(alice.keypairs.createKeypair({ name: "twice", publicKey: "" }))).code, status.ALREADY_EXISTS);
    assert.equal((await failure(alice.keypairs.deleteKeypair({ name: "never" }))).code, status.NOT_FOUND);
  });

  test("the key_pairs quota holds; a deleted key pair frees its place", async () => {
    const held = (await bob.keypairs.listKeypairs({})).keypairs.length;
    await admin.quotas.setProjectLimits({ projectId: "bob", limits: { key_pairs: held + 1 } });
    await bob.keypairs.createKeypair({ name: "last", publicKey: "" });
    const over = await failure(bob.keypairs.createKeypair({ name: "one too many", publicKey: "" }));
    assert.deepEqual([over.code, over.reason, over.metadata.resource], [status.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED", "key_pairs"]);
    assert.equal((await bob.quotas.getLimits({ projectId: "" })).limits.find((l) => l.resource === "key_pairs")!.inUse, held + 1);
    await bob.keypairs.deleteKeypair({ name: "last" });
    await bob.keypairs.createKeypair({ name: "one too many", publicKey: "" });
  });

  test("a server is made with a key pair of its project by name, keeps it when the key pair goes; another project's is NOT_FOUND", async () => {
    const key = await alice.keypairs.createKeypair({ name: "for-servers", publicKey: "" });
    const s = (await alice.servers.createServer({ name: "keyed", flavorId: "m1.small", imageId, requestId: "keyed-1", keyName: "for-servers" })).server!;
    assert.equal(s.keyName, "for-servers");
    await alice.keypairs.deleteKeypair({ name: "for-servers" });
    assert.equal((await alice.servers.getServer({ id: s.id })).server!.keyName, key.keypair!.name, "the server keeps its key");
    const theirs = await failure(alice.servers.createServer({ name: "theirs", flavorId: "m1.small", imageId, requestId: "keyed-2", keyName: "one too many" }));
    assert.equal(theirs.code, status.NOT_FOUND, theirs.message);
    assert.match(theirs.message, /keypair "one too many" not found/);
    const bad = await failure(alice.servers.createServer({ name: "bad", flavorId: "m1.small", imageId, requestId: "keyed-3", keyName: "a/b" }));
    assert.deepEqual([bad.code, bad.fields], [status.INVALID_ARGUMENT, ["key_name"]]);
  });
});
