import type { MsgHdrs } from "nats";
import { nkeyVerify } from "../../controller/domain/ed25519.js";
import { OP_SIGNATURE_HEADER, OP_SIGNING_KEY_HEADER, opSignedBytes } from "../../controller/domain/ops.js";

/**
 * Whether an op message carries a valid signature by one of `trusted` over
 * its subject and payload. No trusted keys: nothing to check against, and
 * every message passes (a controller that does not sign).
 */
export function opSignatureValid(trusted: readonly string[], subject: string, payload: Uint8Array, headers: MsgHdrs | undefined): boolean {
  if (!trusted.length) return true;
  const key = headers?.get(OP_SIGNING_KEY_HEADER) ?? "";
  const sig = headers?.get(OP_SIGNATURE_HEADER) ?? "";
  if (!key || !sig || !trusted.includes(key)) return false;
  return nkeyVerify(key, opSignedBytes(subject, payload), Buffer.from(sig, "base64url"));
}
