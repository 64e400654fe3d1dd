/**
 * Reflection and health, checked with a real third-party reflection client
 * (grpc-js-reflection-client: it fetches descriptors over grpc.reflection
 * v1/v1alpha, builds a protobufjs Root from them and a grpc-js client from
 * that), the way grpcurl would use the server: list, resolve a service and a
 * message that uses the imported google.protobuf.Timestamp, then call a method
 * from the reflected descriptors alone.
 *
 * Run: node --import tsx --test controller/api/reflection.test.ts
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { GrpcReflection } from "grpc-js-reflection-client";
import clientStubsV1 from "grpc-js-reflection-client/dist/Proto/v1.js";
import { service as healthService } from "grpc-health-check";
import { FlavorServiceService, type FlavorServiceServer, type Flavor } from "../../gen/novamesh/compute/v1/flavor.js";
import { Server as ServerMessage } from "../../gen/novamesh/compute/v1/server.js";
import { addHealth, type HealthSetter } from "./health.js";
import { addReflection } from "./reflection.js";

const descriptorSet = readFileSync(new URL("../../gen/novamesh.binpb", import.meta.url));

/** server.proto and everything it imports, in the order reflection sends them (depth first). */
const SERVER_CLOSURE = [
  "novamesh/compute/v1/server.proto",
  "google/protobuf/field_mask.proto",
  "google/protobuf/timestamp.proto",
  "novamesh/compute/v1/operation.proto",
  "google/rpc/status.proto",
  "google/protobuf/any.proto",
];
const FLAVORS: Flavor[] = [
  { id: "1", name: "m1.tiny", vcpus: 1, ramMb: 512, diskGb: 1, description: "", extraSpecs: {} },
  { id: "2", name: "m1.small", vcpus: 1, ramMb: 2048, diskGb: 20, description: "", extraSpecs: { "hw:numa": "1" } },
];
const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<never>) => cb({ code: grpc.status.UNIMPLEMENTED });
const flavorStub: FlavorServiceServer = {
  listFlavors: (call, cb) => cb(null, { flavors: FLAVORS.slice(0, call.request.pageSize || 100), nextPageToken: "" }),
  getFlavor: unimplemented,
  createFlavor: unimplemented,
  deleteFlavor: unimplemented,
};

let server: grpc.Server;
let address = "";
let setHealth: HealthSetter;

before(async () => {
  server = new grpc.Server();
  addReflection(server, descriptorSet);
  setHealth = addHealth(server, { "": "SERVING", "novamesh.compute.v1.FlavorService": "SERVING" });
  server.addService(FlavorServiceService, flavorStub);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
});
after(() => server.forceShutdown());

/** The file names of one file_containing_symbol answer, via the client's own request path. */
async function filesForSymbol(client: GrpcReflection, symbol: string): Promise<string[]> {
  const raw = client as unknown as { getProtoDescriptorBySymbol(s: string): Promise<Uint8Array[]> };
  return (await raw.getProtoDescriptorBySymbol(symbol)).map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
}

for (const version of ["v1", "v1alpha"] as const) {
  describe(`reflection ${version} with grpc-js-reflection-client`, () => {
    let client: GrpcReflection;
    before(() => {
      client = new GrpcReflection(address, grpc.credentials.createInsecure(), {}, version);
    });

    it("lists the services of the set, health and reflection", async () => {
      const services = await client.listServices();
      for (const name of [
        "novamesh.compute.v1.ServerService",
        "novamesh.compute.v1.FlavorService",
        "novamesh.compute.v1.ImageService",
        "novamesh.compute.v1.HostService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]) {
        assert.ok(services.includes(name), `${name} missing from ${services.join(", ")}`);
      }
      assert.deepEqual(services, [...services].sort());
    });

    it("serves a service's file with its import closure in one answer", async () => {
      const files = await filesForSymbol(client, "novamesh.compute.v1.ServerService");
      assert.deepEqual(files, SERVER_CLOSURE);
      // agent.proto imports ops.proto and server.proto, which import timestamp.proto again: sent once.
      const agent = await filesForSymbol(client, "novamesh.agent.v1.AgentService");
      assert.equal(agent[0], "novamesh/agent/v1/agent.proto");
      assert.deepEqual([...agent].sort(), ["novamesh/agent/v1/agent.proto", "novamesh/agent/v1/ops.proto", ...SERVER_CLOSURE].sort());
    });


    it("resolves novamesh.compute.v1.Server and its imported Timestamp", async () => {
      for (const symbol of ["novamesh.compute.v1.ServerService", "novamesh.compute.v1.Server"]) {
        const root = (await client.getDescriptorBySymbol(symbol)).getProtobufJsRoot();
        root.resolveAll();
        const type = root.lookupType("novamesh.compute.v1.Server"); // protobufjs camelCases field names
        assert.equal(type.fields["createTime"]?.resolvedType?.fullName, ".google.protobuf.Timestamp");
        assert.ok(type.fields["metadata"]?.map, "map<string, string> metadata is a map");
        // Bytes written by the generated code decode with the reflected descriptors.
        const created = new Date("2025-01-02T03:04:05Z");
        const bytes = ServerMessage.encode({ ...ServerMessage.fromPartial({ id: "s-1" }), createTime: created }).finish();
        const decoded = type.toObject(type.decode(bytes), { longs: Number }) as {
          id: string;
          createTime: { seconds: number };
        };
        assert.equal(decoded.id, "s-1");
        assert.equal(decoded.createTime.seconds, created.getTime() / 1000);
      }
    });

    it("finds files by method, field, nested message, enum, enum value and file name", async () => {
      const server = "novamesh/compute/v1/server.proto";
      for (const symbol of [
        "novamesh.compute.v1.ServerService.GetServer",
        "novamesh.compute.v1.Server.create_time",
        "novamesh.compute.v1.Server.MetadataEntry",
        "novamesh.compute.v1.VmState",
        "novamesh.compute.v1.VM_STATE_UNSPECIFIED",
        ".novamesh.compute.v1.Server",
      ]) {
        assert.equal((await filesForSymbol(client, symbol))[0], server, symbol);
      }
      const root = (await client.getDescriptorByFileName("novamesh/agent/v1/agent.proto")).getProtobufJsRoot();
      assert.ok(root.lookupService("novamesh.agent.v1.AgentService"));
      assert.deepEqual(await client.getAllExtensionNumbersOfType("novamesh.compute.v1.Server"), {
        base_type_name: "novamesh.compute.v1.Server",
        extension_number: [],
      });
    });

    it("answers NOT_FOUND for unknown symbols and files", async () => {
      await assert.rejects(client.getDescriptorBySymbol("novamesh.compute.v1.Nope"), /not found/);
      await assert.rejects(client.getDescriptorByFileName("nope.proto"), /not found/);
      await assert.rejects(client.getAllExtensionNumbersOfType("novamesh.compute.v1.Nope"), /not found/);
    });

    it("describes the health and reflection services themselves", async () => {
      const health = await client.listMethods("grpc.health.v1.Health");
      assert.deepEqual(health.map((m) => m.name).sort(), ["Check", "List", "Watch"]);
      const reflection = await client.listMethods(`grpc.reflection.${version}.ServerReflection`);
      assert.deepEqual(reflection.map((m) => m.name), ["ServerReflectionInfo"]);
    });

    it("calls FlavorService/ListFlavors from the reflected descriptors alone", async () => {
      const descriptor = await client.getDescriptorBySymbol("novamesh.compute.v1.FlavorService");
      const pkg = descriptor.getPackageObject({ keepCase: true, longs: String, enums: String, defaults: true });
      const ns = (pkg["novamesh"] as grpc.GrpcObject)["compute"] as grpc.GrpcObject;
      const Ctor = (ns["v1"] as grpc.GrpcObject)["FlavorService"] as grpc.ServiceClientConstructor;
      const flavors = new Ctor(address, grpc.credentials.createInsecure());
      try {
        const res = await new Promise<{ flavors: Array<{ name: string; ram_mb: string; extra_specs: object }> }>(
          (resolve, reject) => flavors["ListFlavors"]!({ page_size: 5 }, (e: Error | null, r: never) => (e ? reject(e) : resolve(r))),
        );
        assert.deepEqual(res.flavors.map((f) => [f.name, f.ram_mb]), [["m1.tiny", "512"], ["m1.small", "2048"]]);
        // proto-loader's protobufjs 7 turns map fields read from descriptors into
        // repeated entries (a client-side limitation; the served descriptor marks
        // the entry map_entry, see the MapField check above): accept both shapes.
        const specs = res.flavors[1]?.extra_specs;
        const asObject = Array.isArray(specs) ? Object.fromEntries(specs.map((e: { key: string; value: string }) => [e.key, e.value])) : specs;
        assert.deepEqual(asObject, { "hw:numa": "1" });
      } finally {
        flavors.close();
      }
    });
  });
}

describe("reflection stream behaviour (the client's generated v1 stubs, one stream)", () => {
  it("echoes the request, skips imports already sent and reports NOT_FOUND codes", async () => {
    const v1 = clientStubsV1.grpc.reflection.v1;
    const stub = new v1.ServerReflectionClient(address, grpc.credentials.createInsecure(), {});
    const call = stub.ServerReflectionInfo();
    const answers: Array<InstanceType<typeof v1.ServerReflectionResponse>> = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on("data", (r: InstanceType<typeof v1.ServerReflectionResponse>) => answers.push(r));
      call.on("end", resolve);
      call.on("error", reject);
    });
    call.write(new v1.ServerReflectionRequest({ host: "h", fileContainingSymbol: "novamesh.compute.v1.ServerService" }));
    call.write(new v1.ServerReflectionRequest({ fileContainingSymbol: "novamesh.compute.v1.ImageService" }));
    call.write(new v1.ServerReflectionRequest({ fileContainingSymbol: "no.Such" }));
    call.end();
    await done;
    stub.close();
    const names = (a: (typeof answers)[number] | undefined) =>
      a?.fileDescriptorResponse.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
    assert.equal(answers.length, 3);
    assert.equal(answers[0]?.validHost, "h");
    assert.equal(answers[0]?.originalRequest.fileContainingSymbol, "novamesh.compute.v1.ServerService");
    assert.deepEqual(names(answers[0]), SERVER_CLOSURE);
    assert.deepEqual(names(answers[1]), ["novamesh/compute/v1/image.proto"]);
    assert.equal(answers[2]?.errorResponse.errorCode, grpc.status.NOT_FOUND);
  });
});

describe("health", () => {
  const HealthClient = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, "Health");
  const check = (client: grpc.Client, service: string) =>
    new Promise<string>((resolve, reject) =>
      (client as unknown as Record<string, Function>)["Check"]!.call(client, { service }, (e: Error | null, r: { status: string }) =>
        e ? reject(e) : resolve(r.status),
      ),
    );

  it("serves SERVING and flips to NOT_SERVING, overall and per service", async () => {
    const client = new HealthClient(address, grpc.credentials.createInsecure());
    try {
      assert.equal(await check(client, ""), "SERVING");
      assert.equal(await check(client, "novamesh.compute.v1.FlavorService"), "SERVING");
      setHealth("", "NOT_SERVING");
      assert.equal(await check(client, ""), "NOT_SERVING");
      assert.equal(await check(client, "novamesh.compute.v1.FlavorService"), "SERVING");
      setHealth("novamesh.compute.v1.FlavorService", "NOT_SERVING");
      assert.equal(await check(client, "novamesh.compute.v1.FlavorService"), "NOT_SERVING");
      setHealth("", "SERVING");
      assert.equal(await check(client, ""), "SERVING");
      await assert.rejects(check(client, "no.Such"), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
    } finally {
      client.close();
    }
  });
});
