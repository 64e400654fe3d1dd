import { headers, nkeys, type MsgHdrs } from "nats";
import { nativeSigner, type NkeySigner } from "../domain/ed25519.js";
import { OP_SIGNATURE_HEADER, OP_SIGNING_KEY_HEADER, opSignedBytes } from "../domain/ops.js";
import type { Pool } from "../store/db.js";
import { sharedKeySeed } from "../store/keys.js";

/** Signs ops with the deployment's op-signing key (see OP_SIGNATURE_HEADER). */
export class OpSigner {
  private constructor(private readonly key: NkeySigner) {}

  /** The key every controller of this database shares (made by the first to start). */
  static async shared(pool: Pool): Promise<OpSigner> {
    const fresh = new TextDecoder().decode(nkeys.createOperator().getSeed());
    const seed = await sharedKeySeed(pool, "op-signing", fresh);
    return new OpSigner(nativeSigner(nkeys.fromSeed(new TextEncoder().encode(seed))));
  }

  /** The public key agents verify with. */
  get publicKey(): string {
    return this.key.getPublicKey();
  }

  /** Headers carrying the signature of `payload` on `subject`. */
  sign(subject: string, payload: Uint8Array): MsgHdrs {
    const h = headers();
    h.set(OP_SIGNATURE_HEADER, Buffer.from(this.key.sign(opSignedBytes(subject, payload))).toString("base64url"));
    h.set(OP_SIGNING_KEY_HEADER, this.publicKey);
    return h;
  }
}
