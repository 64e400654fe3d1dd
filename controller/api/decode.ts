/**
 * Requests that cannot be decoded (bytes that are not the message, an int64
 * beyond what a number holds) are the caller's error: grpc-js answers a
 * throwing deserializer with INTERNAL, so each method's deserializer is
 * wrapped to hand the handler an `Undecodable` instead, which the handler
 * wrappers (rpc.ts) answer with INVALID_ARGUMENT.
 */
import { invalidArgument } from "../errors.js";

/** A request message that could not be decoded, and why. */
export class Undecodable {
  constructor(readonly why: string) {}
}

type Method = { readonly requestDeserialize: (bytes: Buffer) => unknown };

/** `service` with every method's request deserializer answering an Undecodable instead of throwing. */
export function tolerant<S extends Record<string, Method>>(service: S): S {
  const out: Record<string, Method> = {};
  for (const [name, m] of Object.entries(service)) {
    out[name] = {
      ...m,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return m.requestDeserialize(bytes);
        } catch (err) {
          return new Undecodable(err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  return out as S;
}

/** Throws INVALID_ARGUMENT when `message` could not be decoded. */
export function decoded<T>(message: T): T {
  if (message instanceof Undecodable) throw invalidArgument("request", `could not be decoded: ${message.why.slice(0, 200)}`);
  return message;
}
