/**
 * The agent listener's check that a client certificate belongs to the host
 * an agent says Hello as: the certificate's subject CN or one of its DNS
 * subject alternative names must equal the host name (letters compared
 * without case). TLS has already verified the certificate against
 * `--agent-client-ca` by then.
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import { permissionDenied } from "../errors.js";

/** The names a client certificate is issued to: its CN and its DNS SANs. */
export function certificateNames(cert: Pick<PeerCertificate, "subject" | "subjectaltname">): string[] {
  const names = new Set<string>();
  const cn = cert.subject?.CN;
  for (const n of Array.isArray(cn) ? cn : cn ? [cn] : []) names.add(n);
  for (const part of (cert.subjectaltname ?? "").split(",")) {
    const m = /^\s*DNS:(.+?)\s*$/.exec(part);
    if (m) names.add(m[1]!);
  }
  return [...names];
}

/** Throws PERMISSION_DENIED unless the call's verified client certificate names `host`. */
export function checkCertificateHost(call: Pick<ServerDuplexStream<unknown, unknown>, "getAuthContext">, host: string): void {
  const cert = call.getAuthContext?.()?.sslPeerCertificate;
  if (!cert) throw permissionDenied("the agent listener needs a verified client certificate");
  const names = certificateNames(cert);
  // Exactly: host names are case-sensitive everywhere else (a certificate for node1 is not NODE1's).
  if (!names.includes(host)) {
    throw permissionDenied(`the client certificate is issued to ${names.map((n) => JSON.stringify(n)).join(", ") || "no name"}, not to host ${JSON.stringify(host)}`);
  }
}
