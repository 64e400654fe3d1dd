/**
 * KeypairService: a project's SSH public keys, imported or generated
 * (the private key returned once, never stored). Creating one takes the
 * project's quota lock and counts against key_pairs.
 */
import type { Keypair as PbKeypair, KeypairServiceServer } from "../../gen/novamesh/compute/v1/keypair.js";
import { checkQuota } from "../conductor/quota.js";
import { BadKey, generateKeyPair, parsePublicKey } from "../domain/ssh-keys.js";
import { alreadyExists, invalidArgument, notFound } from "../errors.js";
import { DEADLOCK_RETRIES, isDuplicateKey, withTx, type Queryable } from "../store/db.js";
import { deleteKeypair, getKeypair, insertKeypair, listKeypairs, type Keypair } from "../store/keypairs.js";
import type { RpcDeps } from "./rpc.js";
import { unary } from "./rpc.js";
import * as v from "./validate.js";

/** The longest public key line taken (an RSA key of 16384 bits is about 2,800). */
const MAX_PUBLIC_KEY_CHARS = 16384;

/** Nova's key pair names: letters, digits, spaces, '.', '_', '-' and '@'. */
const NAME_RE = /^[A-Za-z0-9 ._@-]+$/;

export function keypairName(field: string, s: string): string {
  const name = v.name(field, s);
  if (!NAME_RE.test(name)) throw invalidArgument(field, "may hold only letters, digits, spaces, '.', '_', '-' and '@'");
  return name;
}

/** Key pair `name` of project `projectId` (NOT_FOUND when it has none: another project's is not found either). */
export async function projectKeypair(q: Queryable, projectId: string, field: string, name: string): Promise<Keypair> {
  const k = await getKeypair(q, projectId, keypairName(field, name));
  if (!k) throw notFound("keypair", name);
  return k;
}

function toProto(k: Keypair): PbKeypair {
  return { name: k.name, projectId: k.projectId, type: k.type, publicKey: k.publicKey, fingerprint: k.fingerprint, createTime: k.createdAt };
}

export function keypairService(deps: RpcDeps): KeypairServiceServer {
  const { pool } = deps;
  return {
    createKeypair: unary(deps, "CreateKeypair", async (req, ctx) => {
      const name = keypairName("name", req.name);
      const projectId = ctx.principal.projectId;
      let key;
      let privateKey = "";
      if (req.publicKey.trim()) {
        if (req.publicKey.length > MAX_PUBLIC_KEY_CHARS) throw invalidArgument("public_key", `must be at most ${MAX_PUBLIC_KEY_CHARS} characters`);
        try {
          key = parsePublicKey(req.publicKey);
        } catch (err) {
          if (err instanceof BadKey) throw invalidArgument("public_key", err.message);
          throw err;
        }
      } else {
        const made = generateKeyPair(`${name}@novamesh`);
        key = made.publicKey;
        privateKey = made.privateKey;
      }
      ctx.audit.target = name;
      try {
        await withTx(
          pool,
          async (conn) => {
            await checkQuota(conn, projectId, { key_pairs: 1 });
            await insertKeypair(conn, { projectId, name, type: key.type, publicKey: key.text, fingerprint: key.fingerprint });
          },
          { deadlockRetries: DEADLOCK_RETRIES },
        );
      } catch (err) {
        if (isDuplicateKey(err)) throw alreadyExists("keypair", name);
        throw err;
      }
      return { keypair: toProto((await getKeypair(pool, projectId, name))!), privateKey };
    }),
    getKeypair: unary(deps, "GetKeypair", async (req, ctx) => ({ keypair: toProto(await projectKeypair(pool, ctx.principal.projectId, "name", req.name)) })),
    listKeypairs: unary(deps, "ListKeypairs", async (_req, ctx) => ({ keypairs: (await listKeypairs(pool, ctx.principal.projectId)).map(toProto) })),
    deleteKeypair: unary(deps, "DeleteKeypair", async (req, ctx) => {
      const name = keypairName("name", req.name);
      ctx.audit.target = name;
      if (!(await deleteKeypair(pool, ctx.principal.projectId, name))) throw notFound("keypair", name);
      return {};
    }),
  };
}
