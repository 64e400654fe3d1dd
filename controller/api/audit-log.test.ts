import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import type { Pool } from "../store/db.js";
import { AuditLog, auditTarget, isAudited } from "./audit-log.js";

describe("the audit log", () => {
  test("records mutating calls only: not reads, watches, waits, dry runs, downloads, health or reflection", () => {
    for (const p of ["/novamesh.compute.v1.ServerService/StopServer", "/novamesh.compute.v1.IdentityService/CreateToken", "/novamesh.compute.v1.ImageService/UploadImageData", "/novamesh.compute.v1.OperationService/CancelOperation"]) {
      assert.ok(isAudited(p), p);
    }
    for (const p of [
      "/novamesh.compute.v1.ServerService/GetServer",
      "/novamesh.compute.v1.ServerService/ListServers",
      "/novamesh.compute.v1.ServerService/WatchServers",
      "/novamesh.compute.v1.OperationService/WaitOperation",
      "/novamesh.compute.v1.SchedulerService/ExplainPlacement",
      "/novamesh.compute.v1.ImageService/DownloadImageData",
      "/novamesh.compute.v1.AuditService/ListAuditRecords",
      "/grpc.health.v1.Health/Check",
    ]) {
      assert.ok(!isAudited(p), p);
    }
  });

  test("the target: the handler's note, else the created resource, else the request's id, server, operation name or host", () => {
    assert.equal(auditTarget({ id: "req" }, { server: { id: "made" } }, { target: "noted" }), "noted");
    assert.equal(auditTarget({ name: "web" }, { server: { id: "made" } }, {}), "made");
    assert.equal(auditTarget({ name: "web" }, undefined, {}), "", "a display name is no target");
    assert.equal(auditTarget({ name: "servers/s/operations/r" }, undefined, {}), "servers/s/operations/r");
    assert.equal(auditTarget({ host: "node-1", reason: "x" }, undefined, {}), "node-1");
    assert.equal(auditTarget({ flavor: { id: "f1" } }, undefined, {}), "f1");
    assert.equal(auditTarget(undefined, undefined, {}), "");
  });

  test("a record that cannot be written is logged at error level and counted, and the call goes on", async () => {
    const lines: Array<{ level: number; msg: string }> = [];
    const log = pino({ level: "error" }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const pool = { query: async () => Promise.reject(new Error("disk full")) } as unknown as Pool;
    const audit = new AuditLog(pool, log);
    await audit.record({ path: "/x.S/DeleteServer", principal: null, req: { id: "s1" }, res: undefined, note: {}, code: 16, reason: "UNAUTHENTICATED" });
    assert.equal(audit.failures, 1);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.level, 50);
    assert.match(lines[0]!.msg, /AUDIT RECORD LOST/);
  });
});
