import assert from "node:assert/strict";
import { test } from "node:test";
import { consumerName, hostToken, opsSubject } from "./subjects.js";

test("host names become one safe subject token", () => {
  assert.equal(hostToken("compute-1"), "compute-1");
  assert.equal(hostToken("node1.example.com"), "node1%2Eexample%2Ecom");
  assert.equal(opsSubject("novamesh.ops", "a.b"), "novamesh.ops.a%2Eb");
  assert.notEqual(hostToken("a.b"), hostToken("a_b"));
  assert.doesNotMatch(hostToken("h*>. x"), /[.*> ]/);
});

test("consumer names avoid characters JetStream forbids", () => {
  assert.equal(consumerName("node1.example.com"), "agent-node1~2Eexample~2Ecom");
  assert.doesNotMatch(consumerName("a.b*c>d e/f"), /[.*> /\\]/);
});
