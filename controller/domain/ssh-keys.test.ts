import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { BadKey, generateKeyPair, parsePublicKey } from "./ssh-keys.js";

/** ssh-keygen is the reference: the tests compare with what it makes and reads. */
const dir = mkdtempSync(join(tmpdir(), "novamesh-ssh-keys-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let made = 0;
function keygen(type: string, bits?: number): { pub: string; fingerprint: string } {
  const file = join(dir, `key-${made++}`);
  execFileSync("ssh-keygen", ["-q", "-t", type, ...(bits ? ["-b", String(bits)] : []), "-N", "", "-C", "someone@example", "-f", file]);
  const fingerprint = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", `${file}.pub`]).toString().split(" ")[1]!;
  return { pub: readFileSync(`${file}.pub`, "utf8"), fingerprint };
}

describe("ssh keys", () => {
  for (const [type, bits, name] of [
    ["ed25519", undefined, "ssh-ed25519"],
    ["rsa", 2048, "ssh-rsa"],
    ["ecdsa", 256, "ecdsa-sha2-nistp256"],
    ["ecdsa", 384, "ecdsa-sha2-nistp384"],
    ["ecdsa", 521, "ecdsa-sha2-nistp521"],
  ] as const) {
    test(`an ${name} key from ssh-keygen is read with its type, comment and ssh-keygen's fingerprint`, () => {
      const k = keygen(type, bits);
      const parsed = parsePublicKey(k.pub);
      assert.equal(parsed.type, name);
      assert.equal(parsed.fingerprint, k.fingerprint);
      assert.equal(parsed.text, k.pub.trim());
      assert.ok(parsed.text.endsWith(" someone@example"));
    });
  }

  test("a short RSA key, a wrong type, a damaged blob, a type that disagrees with its blob and two lines are refused, saying why", () => {
    const short = keygen("rsa", 1024).pub;
    assert.throws(() => parsePublicKey(short), (e: Error) => e instanceof BadKey && /1024 bits is too short/.test(e.message));
    const ed = keygen("ed25519").pub;
    const [, data] = ed.split(" ");
    assert.throws(() => parsePublicKey(`ssh-dss ${data}`), /key type must be one of/);
    assert.throws(() => parsePublicKey(`ssh-ed25519 ${data!.slice(0, 40)}`), /truncated|32 bytes/);
    assert.throws(() => parsePublicKey(`ssh-rsa ${data}`), /of type "ssh-ed25519", not ssh-rsa/);
    assert.throws(() => parsePublicKey(`ssh-ed25519 not*base64`), /base64/);
    assert.throws(() => parsePublicKey(`${ed.trim()}\n${ed.trim()}`), /one line/);
    assert.throws(() => parsePublicKey(""), /key type/);
    // A point that is not on the curve.
    const ec = keygen("ecdsa", 256).pub.split(" ");
    const blob = Buffer.from(ec[1]!, "base64");
    blob.writeUInt8(blob.readUInt8(blob.length - 1) ^ 1, blob.length - 1);
    assert.throws(() => parsePublicKey(`${ec[0]} ${blob.toString("base64")}`), /not a valid ecdsa-sha2-nistp256 key/);
  });

  test("a generated key pair: ssh-keygen reads the private key, derives the same public key and fingerprint", () => {
    const { publicKey, privateKey } = generateKeyPair("novamesh");
    const file = join(dir, "generated");
    writeFileSync(file, privateKey, { mode: 0o600 });
    const derived = execFileSync("ssh-keygen", ["-y", "-f", file]).toString().trim();
    assert.equal(derived.split(" ").slice(0, 2).join(" "), publicKey.text.split(" ").slice(0, 2).join(" "));
    const fingerprint = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", file]).toString().split(" ")[1];
    assert.equal(fingerprint, publicKey.fingerprint);
    assert.deepEqual(parsePublicKey(publicKey.text), publicKey);
    assert.notEqual(generateKeyPair("novamesh").publicKey.fingerprint, publicKey.fingerprint, "each pair is new");
  });
});
