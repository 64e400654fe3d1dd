import assert from "node:assert/strict";
import { test } from "node:test";
import { hostnameOf } from "./guest.js";

test("a host name from a display name keeps what a host name may hold, as Nova's does", () => {
  const id = "0b6c2f8e-1d2a-4c5b-9e7f-123456789abc";
  assert.equal(hostnameOf("Web Server_01", id), "web-server-01");
  assert.equal(hostnameOf("--db.example.--", id), "db.example");
  assert.equal(hostnameOf("héllo wörld!", id), "hllo-wrld");
  assert.equal(hostnameOf("日本", id), `server-${id}`);
  const long = hostnameOf(`${"a".repeat(62)}-b`, id);
  assert.equal(long, "a".repeat(62), "at most 63 characters, no '-' left at the end");
});
