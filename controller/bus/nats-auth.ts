/**
 * NATS decentralized authentication: operator, account and user JWTs signed
 * with nkeys (ed25519), as nats-server verifies them in operator mode. The
 * controller holds the application account's signing key and mints each
 * agent a user JWT for the key pair the agent made itself, with permissions
 * for that host's subjects only; nats-server needs no change for a new host.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { nkeys } from "nats";
import { base32Encode, nativeSigner, type NkeySigner } from "../domain/ed25519.js";
import { consumerName, hostToken } from "./subjects.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

function b64url(data: Uint8Array | string): string {
  return Buffer.from(typeof data === "string" ? enc.encode(data) : data).toString("base64url");
}

/** Allow/deny lists of subjects. */
export interface SubjectPermission {
  readonly allow?: readonly string[];
  readonly deny?: readonly string[];
}

/** What a NATS user may publish and subscribe to. */
export interface UserPermissions {
  readonly pub: SubjectPermission;
  readonly sub: SubjectPermission;
  /** May reply (once) to requests it received, whatever the reply subject. */
  readonly allowResponses?: boolean;
}

type KeyPair = ReturnType<typeof nkeys.fromSeed>;

/** Encodes and signs a JWT of `type` for `subject` by `signer`. */
function sign(signer: NkeySigner, subject: string, name: string, nats: Record<string, unknown>, expiresAt?: Date): string {
  const header = { typ: "JWT", alg: "ed25519-nkey" };
  const claims: Record<string, unknown> = {
    jti: "",
    iat: Math.floor(Date.now() / 1000),
    iss: signer.getPublicKey(),
    name,
    sub: subject,
    ...(expiresAt ? { exp: Math.floor(expiresAt.getTime() / 1000) } : {}),
    nats: { ...nats, version: 2 },
  };
  claims.jti = base32Encode(createHash("sha512-256").update(JSON.stringify(claims)).digest());
  const body = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${body}.${b64url(signer.sign(enc.encode(body)))}`;
}

/** The claims of a JWT (not verified: for reading one's own credentials). */
export function jwtClaims(jwt: string): Record<string, unknown> & { sub?: string; exp?: number; nats?: Record<string, unknown> } {
  const part = jwt.split(".")[1];
  if (!part) throw new Error("not a JWT");
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;
}

/** Verifies a NATS JWT's signature by its issuer (tests and tools). */
export function verifyJwt(jwt: string): boolean {
  const [h, c, s] = jwt.split(".");
  if (!h || !c || !s) return false;
  const iss = String(jwtClaims(jwt).iss ?? "");
  try {
    return nkeys.fromPublic(iss).verify(enc.encode(`${h}.${c}`), Buffer.from(s, "base64url"));
  } catch {
    return false;
  }
}

export function operatorJwt(operator: KeyPair, name: string, systemAccount: string): string {
  return sign(operator, operator.getPublicKey(), name, { type: "operator", system_account: systemAccount });
}

/** An account JWT; `jetstream` gives it unlimited JetStream storage. */
export function accountJwt(operator: KeyPair, account: KeyPair, name: string, o: { jetstream: boolean; signingKeys?: readonly string[] }): string {
  const limits: Record<string, unknown> = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
  if (o.jetstream) Object.assign(limits, { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 });
  return sign(operator, account.getPublicKey(), name, {
    type: "account",
    limits,
    signing_keys: o.signingKeys ?? [],
    default_permissions: { pub: {}, sub: {} },
  });
}

/**
 * A user JWT for `userPublicKey`, issued by an account signing key on behalf
 * of `account` (the account's public key).
 */
export function userJwt(
  signingKey: NkeySigner,
  account: string,
  userPublicKey: string,
  name: string,
  perms: UserPermissions,
  expiresAt?: Date,
): string {
  const nats: Record<string, unknown> = {
    type: "user",
    pub: perms.pub,
    sub: perms.sub,
    subs: -1,
    data: -1,
    payload: -1,
    issuer_account: account,
  };
  if (perms.allowResponses) nats.resp = { max: 1, ttl: 0 };
  return sign(signingKey, userPublicKey, name, nats, expiresAt);
}

/** A standard NATS credentials file (what `nats` tools and clients read). */
export function credsFile(jwt: string, seed: string): string {
  return [
    "-----BEGIN NATS USER JWT-----",
    jwt,
    "------END NATS USER JWT------",
    "",
    "************************* IMPORTANT *************************",
    "NKEY Seed printed below can be used to sign and prove identity.",
    "NKEYs are sensitive and should be treated as secrets.",
    "",
    "-----BEGIN USER NKEY SEED-----",
    seed,
    "------END USER NKEY SEED------",
    "",
    "*************************************************************",
    "",
  ].join("\n");
}

/** A credentials file's user JWT and seed; `source` names the file in the error. */
export function parseCreds(text: string, source: string): { jwt: string; seed: string } {
  const jwt = /-----BEGIN NATS USER JWT-----\s*([^\s-][^\s]*)\s*------END NATS USER JWT------/.exec(text)?.[1];
  const seed = /-----BEGIN USER NKEY SEED-----\s*(SU[A-Z2-7]+)\s*------END USER NKEY SEED------/.exec(text)?.[1];
  if (!jwt || !seed) throw new Error(`${source} is not a NATS credentials file (a user JWT and a user seed)`);
  return { jwt, seed };
}


/** Reads an nkey seed file (the seed alone, whitespace around it ignored). */
export async function readSeed(path: string): Promise<KeyPair> {
  const seed = (await readFile(path, "utf8")).trim();
  try {
    return nkeys.fromSeed(enc.encode(seed));
  } catch {
    throw new Error(`${path} does not hold an nkey seed`);
  }
}

export function seedOf(kp: KeyPair): string {
  return dec.decode(kp.getSeed());
}

/** The inbox prefix of a host's agent: the only inbox subjects it may read. */
export function agentInboxPrefix(host: string): string {
  return `_INBOX_${hostToken(host)}`;
}

/**
 * What a host's agent may do on the bus: pull, ack and look up its own
 * durable consumer, read its own inbox, answer its own query subject (one
 * reply to each request), and nothing else — no other host's ops or
 * queries, no publishing ops, no JetStream administration, no objects.
 */
export function agentPermissions(o: { host: string; stream: string; querySubject: string }): UserPermissions {
  const consumer = consumerName(o.host);
  return {
    pub: {
      allow: [
        `$JS.API.CONSUMER.INFO.${o.stream}.${consumer}`,
        `$JS.API.CONSUMER.MSG.NEXT.${o.stream}.${consumer}`,
        `$JS.ACK.${o.stream}.${consumer}.>`,
      ],
    },
    sub: { allow: [`${agentInboxPrefix(o.host)}.>`, o.querySubject] },
    allowResponses: true,
  };
}

/** Mints agents' NATS users: the account's signing key and the account they belong to. */
export class AgentCredentialIssuer {
  constructor(
    private readonly signingKey: NkeySigner,
    readonly account: string,
    private readonly ttlSeconds: number,
  ) {}

  /**
   * The issuer from the controller's own credentials (the text of its
   * credentials file `source`; its JWT names the account) and the account
   * signing key's seed file.
   */
  static async fromCreds(creds: string, source: string, signingKeyPath: string, ttlSeconds: number): Promise<AgentCredentialIssuer> {
    const { jwt } = parseCreds(creds, source);
    const claims = jwtClaims(jwt);
    const account = String(claims.nats?.issuer_account ?? claims.iss ?? "");
    if (!account.startsWith("A")) throw new Error(`${source}: its JWT names no account`);
    const key = await readSeed(signingKeyPath);
    return new AgentCredentialIssuer(nativeSigner(key), account, ttlSeconds);
  }

  /** A user JWT for the key an agent of `host` made, valid for the issuer's TTL. */
  issue(userPublicKey: string, o: { host: string; stream: string; querySubject: string }): { jwt: string; expiresAt: Date } {
    let pub: ReturnType<typeof nkeys.fromPublic>;
    try {
      pub = nkeys.fromPublic(userPublicKey);
    } catch {
      throw new Error("not an nkey public key");
    }
    if (!pub.getPublicKey().startsWith("U")) throw new Error("not a user public key");
    const expiresAt = new Date(Date.now() + this.ttlSeconds * 1000);
    return { jwt: userJwt(this.signingKey, this.account, userPublicKey, `agent ${o.host}`, agentPermissions(o), expiresAt), expiresAt };
  }
}
