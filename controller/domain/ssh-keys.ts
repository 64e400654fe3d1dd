/**
 * OpenSSH public keys: parsed and checked (the key blob is loaded as a
 * public key, so a truncated or off-curve key is refused), fingerprinted
 * as `ssh-keygen -l` does, and Ed25519 key pairs generated with the private
 * key in OpenSSH's own format.
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, type JsonWebKey } from "node:crypto";

export const KEY_TYPES = ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** RSA keys shorter than this are refused (OpenSSH refuses under 1024; NIST retired 1024 long ago). */
export const MIN_RSA_BITS = 2048;

export interface PublicKey {
  readonly type: KeyType;
  /** `type base64 [comment]`, normalised to single spaces. */
  readonly text: string;
  readonly fingerprint: string;
}

/** Why a text is not a usable public key. */
export class BadKey extends Error {}

/** SSH wire strings: a 4-byte length, then the bytes. */
function readStrings(blob: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < blob.length) {
    if (at + 4 > blob.length) throw new BadKey("the key data is truncated");
    const n = blob.readUInt32BE(at);
    if (at + 4 + n > blob.length) throw new BadKey("the key data is truncated");
    out.push(blob.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

function sshString(b: Buffer | string): Buffer {
  const data = typeof b === "string" ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

const b64url = (b: Buffer) => b.toString("base64url");
/** An SSH mpint as an unsigned big-endian number. */
const unsigned = (b: Buffer) => (b[0] === 0 ? b.subarray(1) : b);

const CURVES: Record<string, { crv: string; size: number }> = {
  nistp256: { crv: "P-256", size: 32 },
  nistp384: { crv: "P-384", size: 48 },
  nistp521: { crv: "P-521", size: 66 },
};

/** The key blob as a JWK, for Node to load (which checks it). */
function jwkOf(type: KeyType, parts: Buffer[]): JsonWebKey {
  if (type === "ssh-ed25519") {
    if (parts.length !== 2 || parts[1]!.length !== 32) throw new BadKey("an ssh-ed25519 key is 32 bytes");
    return { kty: "OKP", crv: "Ed25519", x: b64url(parts[1]!) };
  }
  if (type === "ssh-rsa") {
    if (parts.length !== 3) throw new BadKey("an ssh-rsa key has an exponent and a modulus");
    const n = unsigned(parts[2]!);
    const bits = n.length * 8 - Math.clz32(n[0] ?? 0) + 24;
    if (bits < MIN_RSA_BITS) throw new BadKey(`an RSA key of ${bits} bits is too short (at least ${MIN_RSA_BITS})`);
    return { kty: "RSA", e: b64url(unsigned(parts[1]!)), n: b64url(n) };
  }
  const curve = CURVES[type.slice("ecdsa-sha2-".length)]!;
  const point = parts[2];
  if (parts.length !== 3 || parts[1]!.toString() !== type.slice("ecdsa-sha2-".length) || !point || point[0] !== 4 || point.length !== 1 + 2 * curve.size) {
    throw new BadKey(`not an uncompressed ${curve.crv} point`);
  }
  return { kty: "EC", crv: curve.crv, x: b64url(point.subarray(1, 1 + curve.size)), y: b64url(point.subarray(1 + curve.size)) };
}

/** `SHA256:` and the unpadded base64 of the blob's SHA-256, as `ssh-keygen -l` prints. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Parses an authorized_keys line (`type base64 [comment]`); throws BadKey saying what is wrong. */
export function parsePublicKey(text: string): PublicKey {
  const line = text.trim();
  if (line.includes("\n")) throw new BadKey("must be one line");
  const [type, data, ...comment] = line.split(/\s+/);
  if ([...comment.join(" ")].length > 255) throw new BadKey("the comment must be at most 255 characters");
  if (!type || !(KEY_TYPES as readonly string[]).includes(type)) throw new BadKey(`the key type must be one of ${KEY_TYPES.join(", ")}`);
  if (!data || !/^[A-Za-z0-9+/]+={0,2}$/.test(data)) throw new BadKey("the key data must be base64");
  const blob = Buffer.from(data, "base64");
  const parts = readStrings(blob);
  if (parts[0]?.toString() !== type) throw new BadKey(`the key data is of type ${JSON.stringify(parts[0]?.toString() ?? "")}, not ${type}`);
  try {
    createPublicKey({ key: jwkOf(type as KeyType, parts), format: "jwk" });
  } catch (err) {
    if (err instanceof BadKey) throw err;
    throw new BadKey(`not a valid ${type} key`);
  }
  return { type: type as KeyType, text: [type, data, ...comment].join(" "), fingerprint: fingerprintOf(blob) };
}

/** Base64 in lines of 70, as OpenSSH writes its private keys. */
function wrap(b64: string): string {
  return b64.match(/.{1,70}/g)!.join("\n");
}

/** A new Ed25519 key pair: the public key, and the private key in OpenSSH's format (unencrypted). */
export function generateKeyPair(comment: string): { publicKey: PublicKey; privateKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const pub = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
  const blob = Buffer.concat([sshString("ssh-ed25519"), sshString(pub)]);
  const check = randomBytes(4);
  let secret = Buffer.concat([check, check, sshString("ssh-ed25519"), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const pad = (8 - (secret.length % 8)) % 8;
  secret = Buffer.concat([secret, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([
    Buffer.from("openssh-key-v1\0"),
    sshString("none"),
    sshString("none"),
    sshString(""),
    Buffer.from([0, 0, 0, 1]),
    sshString(blob),
    sshString(secret),
  ]);
  const text = `ssh-ed25519 ${blob.toString("base64")}${comment ? ` ${comment}` : ""}`;
  return {
    publicKey: { type: "ssh-ed25519", text, fingerprint: fingerprintOf(blob) },
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${wrap(body.toString("base64"))}\n-----END OPENSSH PRIVATE KEY-----\n`,
  };
}
