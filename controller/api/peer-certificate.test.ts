import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import { certificateNames, checkCertificateHost } from "./peer-certificate.js";

const call = (cert: Partial<PeerCertificate> | undefined) => ({ getAuthContext: () => ({ sslPeerCertificate: cert as PeerCertificate | undefined }) });

test("a certificate's names are its CN and its DNS SANs (not its IP SANs)", () => {
  assert.deepEqual(certificateNames({ subject: { CN: "host-a" } as PeerCertificate["subject"], subjectaltname: "DNS:host-a.example, IP Address:10.0.0.1, DNS:host-a" }), ["host-a", "host-a.example"]);
  assert.deepEqual(certificateNames({ subject: {} as PeerCertificate["subject"], subjectaltname: undefined as unknown as string }), []);
});

test("a Hello's host must be one of the client certificate's names, exactly; none is PERMISSION_DENIED", () => {
  const cert = { subject: { CN: "Host-A" } as PeerCertificate["subject"], subjectaltname: "DNS:host-a.example" };
  assert.doesNotThrow(() => checkCertificateHost(call(cert), "Host-A"));
  assert.throws(() => checkCertificateHost(call(cert), "host-a"), /not to host "host-a"/, "host names are case-sensitive: Host-A's certificate is not host-a's");
  assert.doesNotThrow(() => checkCertificateHost(call(cert), "host-a.example"));
  assert.throws(() => checkCertificateHost(call(cert), "host-b"), (e: { code: number; message: string }) => e.code === status.PERMISSION_DENIED && /not to host "host-b"/.test(e.message));
  assert.throws(() => checkCertificateHost(call(undefined), "host-a"), /needs a verified client certificate/);
});
