import assert from "node:assert/strict";
import { test } from "node:test";
import { nkeys } from "nats";
import { nativeSigner, newUserNkey, nkeyVerify, privateKeyOfSeed, publicKeyOf } from "./ed25519.js";

test("native signatures are nkeys' signatures, and each side verifies the other's", () => {
  for (const pair of [nkeys.createOperator(), nkeys.createAccount(), nkeys.createUser()]) {
    const data = new TextEncoder().encode(`op payload for ${pair.getPublicKey()}`);
    const signer = nativeSigner(pair);
    assert.equal(signer.getPublicKey(), pair.getPublicKey());
    const ours = signer.sign(data);
    assert.deepEqual(Buffer.from(ours), Buffer.from(pair.sign(data)), "ed25519 is deterministic: the same bytes");
    assert.ok(nkeys.fromPublic(pair.getPublicKey()).verify(data, ours));
    assert.ok(nkeyVerify(pair.getPublicKey(), data, pair.sign(data)));
  }
});

test("a tampered payload, another key or a malformed signature does not verify", () => {
  const a = nkeys.createOperator();
  const b = nkeys.createOperator();
  const data = Buffer.from("stop server 1");
  const sig = nativeSigner(a).sign(data);
  assert.equal(nkeyVerify(a.getPublicKey(), Buffer.from("stop server 2"), sig), false);
  assert.equal(nkeyVerify(b.getPublicKey(), data, sig), false);
  assert.equal(nkeyVerify(a.getPublicKey(), data, sig.subarray(0, 10)), false);
  assert.equal(nkeyVerify("not-a-key", data, sig), false);
});

test("a key whose checksum or length is wrong is refused", () => {
  const pub = nkeys.createOperator().getPublicKey();
  const flipped = pub.slice(0, 10) + (pub[10] === "A" ? "B" : "A") + pub.slice(11);
  assert.throws(() => publicKeyOf(flipped), /checksum/);
  assert.throws(() => publicKeyOf(pub.slice(0, -3)), /length|checksum/);
  const seed = new TextDecoder().decode(nkeys.createOperator().getSeed());
  assert.throws(() => privateKeyOfSeed(seed.slice(0, -1) + "!"), /base32/);
});

test("a user key pair made natively is one nkeys reads back: same public key, signatures it verifies", () => {
  const made = newUserNkey();
  assert.match(made.publicKey, /^U[A-Z2-7]{55}$/);
  assert.match(new TextDecoder().decode(made.seed), /^SU[A-Z2-7]{56}$/);
  const pair = nkeys.fromSeed(made.seed);
  assert.equal(pair.getPublicKey(), made.publicKey);
  const data = Buffer.from("nonce");
  assert.ok(nkeys.fromPublic(made.publicKey).verify(data, pair.sign(data)));
  assert.notEqual(newUserNkey().publicKey, made.publicKey);
});
