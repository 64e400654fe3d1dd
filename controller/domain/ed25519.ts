/**
 * Ed25519 signatures of nkeys (NATS's encoding of ed25519 keys) made and
 * checked by Node's own crypto (OpenSSL), not by the pure-JavaScript
 * tweetnacl that nkeys.js uses: the same signatures, two orders of
 * magnitude cheaper. Every op the controller publishes is signed and
 * every op an agent takes is checked, so this is on the hot path.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 base32 without padding, as nkeys writes it. */
function base32Decode(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = ALPHABET.indexOf(ch);
    if (v < 0) throw new Error("not an nkey: a character outside base32");
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 4648 base32 without padding (nkeys, and the ids of NATS JWTs). */
export function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** CRC-16/XMODEM, the checksum at the end of every nkey. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The payload of an nkey after `prefixBytes` bytes of prefix, its checksum checked. */
function payload(encoded: string, prefixBytes: number): Buffer {
  const raw = base32Decode(encoded);
  if (raw.length !== prefixBytes + 32 + 2) throw new Error("not an nkey: wrong length");
  const body = raw.subarray(0, raw.length - 2);
  if (raw.readUInt16LE(raw.length - 2) !== crc16(body)) throw new Error("not an nkey: bad checksum");
  return Buffer.from(body.subarray(prefixBytes));
}

/** `head` and `body` with their checksum, in base32: an nkey. */
function encode(head: number[], body: Uint8Array): string {
  const raw = Buffer.concat([Buffer.from(head), body, Buffer.alloc(2)]);
  raw.writeUInt16LE(crc16(raw.subarray(0, raw.length - 2)), raw.length - 2);
  return base32Encode(raw);
}

/** nkeys' prefix byte of user public keys ("U…") and of seeds ("S…"). */
const USER_PREFIX = 20 << 3;
const SEED_PREFIX = 18 << 3;

/**
 * A new NATS user key pair, made by Node's crypto: its seed ("SU…", as
 * nkeys.fromSeed and NATS authenticators take it) and public key ("U…").
 * nkeys.createUser() followed by getPublicKey() costs milliseconds of
 * pure-JavaScript curve arithmetic; this, microseconds.
 */
export function newUserNkey(): { seed: Uint8Array; publicKey: string } {
  // The JWK form names the two 32-byte values (d: the seed, x: the public key) whatever DER layout OpenSSL writes.
  const jwk = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
  const rawSeed = Buffer.from(jwk.d!, "base64url");
  const rawPublic = Buffer.from(jwk.x!, "base64url");
  if (rawSeed.length !== 32 || rawPublic.length !== 32) throw new Error("ed25519 key of an unexpected size");
  return {
    seed: new TextEncoder().encode(encode([SEED_PREFIX | (USER_PREFIX >> 5), (USER_PREFIX & 31) << 3], rawSeed)),
    publicKey: encode([USER_PREFIX], rawPublic),
  };
}

// DER headers of an ed25519 PKCS#8 private key and SPKI public key, before their 32 raw bytes.
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** A signing key from an nkey seed ("S…": two prefix bytes, then the 32-byte ed25519 seed). */
export function privateKeyOfSeed(seed: string | Uint8Array): KeyObject {
  const text = typeof seed === "string" ? seed : new TextDecoder().decode(seed);
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, payload(text, 2)]), format: "der", type: "pkcs8" });
}

const publicKeys = new Map<string, KeyObject>();

/** The verifying key of an nkey public key ("O…", "A…", "U…": one prefix byte, then 32 bytes); kept once made. */
export function publicKeyOf(nkey: string): KeyObject {
  let k = publicKeys.get(nkey);
  if (!k) {
    k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, payload(nkey, 1)]), format: "der", type: "spki" });
    if (publicKeys.size >= 1024) publicKeys.clear();
    publicKeys.set(nkey, k);
  }
  return k;
}

/** An nkey pair's signer: its public key, and sign() giving the same signature nkeys.js would. */
export interface NkeySigner {
  getPublicKey(): string;
  sign(data: Uint8Array): Uint8Array;
}

export function nativeSigner(pair: { getPublicKey(): string; getSeed(): Uint8Array }): NkeySigner {
  const key = privateKeyOfSeed(pair.getSeed());
  const publicKey = pair.getPublicKey();
  return { getPublicKey: () => publicKey, sign: (data) => sign(null, data, key) };
}

/** Whether `signature` is `nkey`'s over `data` (false for a malformed key or signature). */
export function nkeyVerify(nkey: string, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(null, data, publicKeyOf(nkey), signature);
  } catch {
    return false;
  }
}
