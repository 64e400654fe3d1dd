import assert from "node:assert/strict";
import { test } from "node:test";
import { connectionHint } from "./tls.js";

// The errors below are what grpc-js reports for each case (taken from real handshakes).
test("a failed connection's TLS error gets a hint in words; other errors none", () => {
  const cases: [string, RegExp | undefined][] = [
    ["14 UNAVAILABLE: No connection established. Last error: Error: 808C84FF6E7F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number", /give the agent --plaintext too/],
    ["14 UNAVAILABLE: No connection established. Last error: Error: self-signed certificate in certificate chain.", /--tls-ca/],
    ["14 UNAVAILABLE: No connection established. Last error: Error [ERR_TLS_CERT_ALTNAME_INVALID]: Hostname/IP does not match certificate's altnames", /--tls-server-name/],
    ["14 UNAVAILABLE: No connection established. Last error: 80ACC3C0517F0000:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required", /--tls-cert and --tls-key/],
    ["14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:8774", undefined],
  ];
  for (const [message, hint] of cases) {
    const h = connectionHint(new Error(message));
    if (hint) assert.match(h ?? "", hint, message);
    else assert.equal(h, undefined, message);
  }
});
