import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import type { Principal } from "../domain/types.js";
import { ApiError } from "../errors.js";
import { DEFAULT_LIMITS, Limits } from "./limits.js";

const member: Principal = { tokenId: "m", projectId: "p", role: "member", host: null };
const other: Principal = { tokenId: "o", projectId: "p", role: "member", host: null };
const admin: Principal = { tokenId: "a", projectId: "admin", role: "admin", host: null };

function refused(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError);
    assert.equal(err.code, status.RESOURCE_EXHAUSTED);
    return err;
  }
  assert.fail("expected RESOURCE_EXHAUSTED");
}

test("a token's bucket: the burst at once, then the rate; the refusal says when the next request fits", () => {
  let now = 0;
  const limits = new Limits({ ...DEFAULT_LIMITS, ratePerSecond: 2, rateBurst: 3 }, () => now);
  for (let i = 0; i < 3; i++) limits.admit(member);
  const err = refused(() => limits.admit(member));
  assert.equal(err.retryDelayMs, 500);
  assert.equal(err.metadata.limit, "rate");
  assert.deepEqual(err.quotaViolations.map((v) => v.subject), ["token:m"]);
  limits.admit(other); // its own bucket
  now += 499;
  refused(() => limits.admit(member));
  now += 1;
  limits.admit(member);
  // Admins are unlimited by default.
  for (let i = 0; i < 10_000; i++) limits.admit(admin);
});

test("admins have their own rate when one is set", () => {
  const limits = new Limits({ ...DEFAULT_LIMITS, adminRatePerSecond: 1, adminRateBurst: 2 }, () => 0);
  limits.admit(admin);
  limits.admit(admin);
  assert.equal(refused(() => limits.admit(admin)).metadata.limit, "admin_rate");
});

test("streams: a cap per token and in total; closing frees a place, closing twice frees one", () => {
  const limits = new Limits({ ...DEFAULT_LIMITS, maxStreamsPerToken: 2, maxStreams: 3 });
  const a1 = limits.openStream(member);
  limits.openStream(member);
  assert.equal(refused(() => limits.openStream(member)).metadata.limit, "streams_per_token");
  limits.openStream(other);
  assert.equal(refused(() => limits.openStream(admin)).metadata.limit, "streams");
  a1();
  a1();
  assert.equal(limits.open(), 2);
  limits.openStream(admin);
  assert.equal(refused(() => limits.openStream(other)).metadata.limit, "streams");
});

test("agent streams: a cap per token of their own", () => {
  const limits = new Limits({ ...DEFAULT_LIMITS, maxAgentStreamsPerToken: 1, maxStreams: 1 });
  const close = limits.openAgentStream(admin);
  assert.equal(refused(() => limits.openAgentStream(admin)).metadata.limit, "agent_streams_per_token");
  limits.openStream(admin); // public streams are counted apart
  close();
  limits.openAgentStream(admin);
});
