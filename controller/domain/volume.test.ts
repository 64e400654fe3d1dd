import assert from "node:assert/strict";
import { test } from "node:test";
import { rankPools, type PoolCandidate } from "./volume.js";

const GiB = 1024 ** 3;
const pool = (host: string, name: string, totalGb: number, allocatedGb: number): PoolCandidate => ({ host, name, zone: "nova", totalBytes: totalGb * GiB, allocatedBytes: allocatedGb * GiB });

test("pools are tried by most room left, so volumes spread; ties by host and pool", () => {
  const ranked = rankPools([pool("b", "p", 100, 90), pool("a", "p", 50, 0), pool("c", "p", 60, 10), pool("a", "o", 50, 0)], 1);
  assert.deepEqual(
    ranked.map((p) => `${p.host}/${p.name}`),
    ["a/o", "a/p", "c/p", "b/p"],
  );
});

test("the over-subscription ratio scales a pool's room", () => {
  // 100 GiB with 150 placed: full at 1.0, 50 GiB of room at 2.0.
  const ranked = rankPools([pool("thin", "p", 100, 150), pool("thick", "p", 20, 0)], 2);
  assert.deepEqual(ranked.map((p) => p.host), ["thin", "thick"]);
  assert.deepEqual(rankPools([pool("thin", "p", 100, 150), pool("thick", "p", 20, 0)], 1).map((p) => p.host), ["thick", "thin"]);
});
