import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ApiError } from "../errors.js";
import { cut, decodeStatusDetails, toServiceError } from "./status.js";

test("an error text cut short never splits a surrogate pair, and lone surrogates become U+FFFD (grpc-js URI-encodes the message)", () => {
  for (const prefix of ["", "x", "xy"]) {
    const s = cut(prefix + "💥".repeat(2000));
    assert.doesNotThrow(() => encodeURI(s), `prefix ${JSON.stringify(prefix)}`);
    assert.match(s, /more characters\)$/);
  }
  assert.equal(cut("a\uD800b\uDC00"), "a\uFFFDb\uFFFD");
  assert.equal(cut("ok 💥"), "ok 💥");
  const err = toServiceError(new ApiError(status.NOT_FOUND, `flavor "${"\uD83D".repeat(3)}" not found`));
  assert.doesNotThrow(() => encodeURI(err.details!));
});

test("a limit's refusal carries RetryInfo and QuotaFailure", () => {
  const err = toServiceError(
    new ApiError(status.RESOURCE_EXHAUSTED, "too many", { reason: "RATE_LIMITED", retryDelayMs: 1500, quotaViolations: [{ subject: "token:t", description: "too many" }] }),
  );
  const d = decodeStatusDetails(err.metadata);
  assert.deepEqual(d.retryInfo?.retryDelay, { seconds: 1, nanos: 500_000_000 });
  assert.deepEqual(d.quotaFailure?.violations.map((v) => [v.subject, v.description]), [["token:t", "too many"]]);
});
