import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import { toServiceError } from "../controller/api/status.js";
import { ApiError } from "../controller/errors.js";
import { askedRetryDelayMs, backoffDelay } from "./backoff.js";

test("the retry delay a busy controller sends is read back from the status details", () => {
  const busy = toServiceError(new ApiError(status.UNAVAILABLE, "busy", { reason: "CONTROLLER_BUSY", retryDelayMs: 7250 }));
  assert.equal(askedRetryDelayMs(busy), 7250);
  assert.equal(askedRetryDelayMs(toServiceError(new ApiError(status.UNAVAILABLE, "down"))), undefined);
  assert.equal(askedRetryDelayMs(new Error("no HelloAck within 10000 ms")), undefined);
  assert.equal(askedRetryDelayMs(undefined), undefined);
});

test("backoff doubles up to its cap, jittered down to half", () => {
  const o = { initialMs: 500, maxMs: 30_000 };
  assert.equal(backoffDelay(0, o, () => 1), 500);
  assert.equal(backoffDelay(3, o, () => 1), 4000);
  assert.equal(backoffDelay(3, o, () => 0), 2000);
  assert.equal(backoffDelay(20, o, () => 1), 30_000);
});
