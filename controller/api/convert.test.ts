import assert from "node:assert/strict";
import { test } from "node:test";
import { operationName, parseOperationName } from "./convert.js";

test("operation names round-trip any request id", () => {
  const id = "0b0f4c1e-3c1d-4e5a-9b7e-2f1d3c4b5a69";
  for (const rid of ["req-1", "stop/1 ops", "ümlaut%", "a".repeat(128)]) {
    const name = operationName(id, rid);
    assert.match(name, /^servers\/[0-9a-f-]{36}\/operations\/[^/]+$/);
    assert.deepEqual(parseOperationName(name), { collection: "servers", id, requestId: rid });
    assert.deepEqual(parseOperationName(operationName(id, rid, "volumes")), { collection: "volumes", id, requestId: rid });
  }
});

test("malformed operation names are not names", () => {
  for (const bad of ["", "operations/x", "servers/x/operations/y", "images/0b0f4c1e-3c1d-4e5a-9b7e-2f1d3c4b5a69/operations/y", "servers/0b0f4c1e-3c1d-4e5a-9b7e-2f1d3c4b5a69/operations/", "servers/0b0f4c1e-3c1d-4e5a-9b7e-2f1d3c4b5a69/operations/%E0%A4%A"]) {
    assert.equal(parseOperationName(bad), null, bad);
  }
});
