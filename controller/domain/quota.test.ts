import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BUILT_IN_DEFAULTS, excesses, mergeLimits, resizeRequest } from "./quota.js";

const u = (inUse: number, reserved = 0) => ({ inUse, reserved });

describe("quota rules", () => {
  test("a request fits up to the limit exactly, and not one more; in use and reserved both count", () => {
    const { limits } = mergeLimits({ instances: 10, cores: 20 }, {});
    assert.deepEqual(excesses(limits, { instances: u(9), cores: u(16, 2) }, { instances: 1, cores: 2 }), []);
    assert.deepEqual(excesses(limits, { instances: u(9, 1), cores: u(16, 2) }, { instances: 1, cores: 3 }), [
      { resource: "instances", limit: 10, used: 10, requested: 1 },
      { resource: "cores", limit: 20, used: 18, requested: 3 },
    ]);
  });

  test("-1 is no limit; a request that takes nothing passes even over a lowered limit", () => {
    const { limits } = mergeLimits({ cores: -1, instances: 2 }, {});
    assert.deepEqual(excesses(limits, { cores: u(10 ** 9), instances: u(5) }, { cores: 64 }), []);
    assert.deepEqual(excesses(limits, { instances: u(5) }, { instances: 0, ram: 0 }), []);
    assert.throws(() => excesses(limits, {}, { instances: 1 }), /usage of instances was not counted/);
  });

  test("a project's own limits override the defaults, which fall back to the built-in ones", () => {
    const p = mergeLimits({ cores: 40 }, { instances: 3 });
    assert.deepEqual([p.limits.instances, p.limits.cores, p.limits.ram], [3, 40, BUILT_IN_DEFAULTS.ram]);
    assert.deepEqual([...p.own], ["instances"]);
  });

  test("a resize asks only for growth", () => {
    const small = { vcpus: 2, ramMb: 2048 };
    const big = { vcpus: 4, ramMb: 1024 };
    assert.deepEqual(resizeRequest(small, big), { cores: 2, ram: 0 });
    assert.deepEqual(resizeRequest(big, small), { cores: 0, ram: 1024 });
  });
});
