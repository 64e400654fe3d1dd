import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { GrpcReflection } from "grpc-js-reflection-client";
import { Image, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import type { Controller } from "../controller/controller.js";
import { REPO } from "./agents.js";
import { TestEnv } from "./harness.js";

interface Example {
  readonly line: string;
  readonly auth: boolean;
  readonly body: Record<string, unknown> | null;
  readonly target: string;
}

/** The grpcurl commands of the README, parsed. */
async function readmeExamples(): Promise<Example[]> {
  const text = await readFile(join(REPO, "README.md"), "utf8");
  const out: Example[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("grpcurl ")) continue;
    const m = /^grpcurl -plaintext (-H "authorization: Bearer \$TOKEN" )?(?:-d '([^']*)' )?127\.0\.0\.1:8774 (.+)$/.exec(line);
    assert.ok(m, `README example not understood: ${line}`);
    out.push({ line, auth: Boolean(m[1]), body: m[2] ? (JSON.parse(m[2]) as Record<string, unknown>) : null, target: m[3]! });
  }
  return out;
}

/**
 * Runs the README's grpcurl examples with a generic reflection client (grpcurl
 * itself cannot be installed here): every type comes from the server's
 * reflection, nothing from this repository's generated code.
 */
describe("the README's grpcurl examples, through server reflection", () => {
  const env = new TestEnv();
  let ctl: Controller;
  let examples: Example[];

  before(async () => {
    examples = await readmeExamples();
    ctl = await env.startController();
    const create = examples.find((e) => e.target.endsWith("/CreateServer"));
    assert.ok(create?.body, "the README has a CreateServer example");
    await env.admin(ctl).images.registerImage({
      image: Image.fromPartial({ id: String(create.body.image_id), name: "cirros-0.6.2", visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC }),
    });
  });
  after(() => env.cleanup());

  test("every example runs and does what it says", async () => {
    assert.ok(examples.length >= 8, `found ${examples.length} examples`);
    const address = env.address(ctl);
    const reflection = new GrpcReflection(address, grpc.credentials.createInsecure(), {}, "v1");
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${env.adminToken}`);
    const results = new Map<string, unknown>();

    for (const ex of examples) {
      if (ex.target === "list") {
        const services = (await reflection.listServices()).map((s) => (typeof s === "string" ? s : (s as { name: string }).name));
        for (const s of ["novamesh.compute.v1.ServerService", "novamesh.compute.v1.FlavorService", "grpc.health.v1.Health"]) {
          assert.ok(services.includes(s), `list shows ${s}`);
        }
        continue;
      }
      if (ex.target.startsWith("describe ")) {
        const symbol = ex.target.slice("describe ".length);
        const root = (await reflection.getDescriptorBySymbol(symbol)).getProtobufJsRoot();
        assert.ok(root.lookup(symbol), `describe ${symbol}`);
        continue;
      }
      const [service, method] = ex.target.split("/") as [string, string];
      const pkg = (await reflection.getDescriptorBySymbol(service)).getPackageObject({ keepCase: true, longs: String, enums: String, defaults: true });
      let node: unknown = pkg;
      for (const part of service.split(".")) node = (node as Record<string, unknown>)[part];
      const client = new (node as grpc.ServiceClientConstructor)(address, grpc.credentials.createInsecure());
      const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!.bind(client);
      const callMd = ex.auth ? md : new grpc.Metadata();
      if (method === "WatchServers") {
        const stream = fn(ex.body ?? {}, callMd) as grpc.ClientReadableStream<unknown>;
        const failed = new Promise<unknown>((resolve) => stream.on("error", resolve));
        const outcome = await Promise.race([failed, new Promise((r) => setTimeout(() => r("open"), 500))]);
        assert.equal(outcome, "open", `${ex.line} keeps streaming`);
        stream.cancel();
      } else {
        const res = await new Promise((resolve, reject) => fn(ex.body ?? {}, callMd, (e: Error | null, r: unknown) => (e ? reject(new Error(`${ex.line}: ${e.message}`)) : resolve(r))));
        results.set(method, res);
      }
      client.close();
    }

    const flavors = results.get("ListFlavors") as { flavors: Array<{ name: string }> };
    assert.deepEqual(flavors.flavors.map((f) => f.name), ["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"]);
    const created = results.get("CreateServer") as { server: { id: string; name: string; status: string } };
    assert.equal(created.server.name, "web-1");
    assert.equal(created.server.status, "SERVER_STATUS_BUILD");
    const listed = results.get("ListServers") as { servers: Array<{ id: string }> };
    assert.deepEqual(listed.servers.map((s) => s.id), [created.server.id]);
    const token = results.get("CreateToken") as { secret: string; token: { project_id: string; role: string } };
    assert.equal(token.token.project_id, "demo");
    assert.equal(token.token.role, "ROLE_MEMBER");
    assert.ok(token.secret.length > 20);
    assert.ok(results.has("ListServices") && results.has("ListHypervisors"));
  });
});
