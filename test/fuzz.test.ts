/**
 * Fuzzing the whole API: a few thousand requests over every RPC of every
 * service the controller serves (taken from the generated service
 * definitions, streaming ones and AgentService/Connect included), as random
 * bytes or as messages built from the descriptor set with extreme fields
 * (strings up to 1 MiB, unicode, int64 extremes, NaN and infinities,
 * unknown enum values, long and empty repeated fields and maps, timestamps
 * out of range, unknown fields), without a token, with a member's and with
 * an admin's. Not one may be answered INTERNAL or UNKNOWN or hang (every
 * call has a deadline; DEADLINE_EXCEEDED is a hang), and the controller —
 * its own process here, so that its memory is its own — must hold no more
 * than twice the memory after its garbage collection than before.
 *
 * The seed is printed; NOVAMESH_FUZZ_SEED=<seed> runs the same requests
 * again, NOVAMESH_FUZZ_REQUESTS=<n> more or fewer of them.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { createFileRegistry, fromBinary, ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { freePort, REPO, tempDirPath } from "./agents.js";
import { clients, eventually, NATS_URL, TestEnv, MYSQL_URL } from "./harness.js";

const REQUESTS = Number(process.env.NOVAMESH_FUZZ_REQUESTS ?? 3000);
const SEED = Number(process.env.NOVAMESH_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** Calls in flight at once: enough to overlap, few enough that the allocator's high-water mark does not pass for a leak. */
const CONCURRENCY = 4;
/** Every call's deadline: a call still unanswered by then hangs. */
const DEADLINE_MS = 20_000;
/** A server stream still open after this long is one that waits for events (WatchServers): the client ends it. */
const OPEN_STREAM_MS = 1_000;

/** mulberry32: a small seeded PRNG, so a failing run can be repeated. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Method {
  readonly service: string;
  readonly name: string;
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly input: DescMessage;
}

/** Every method of every service in gen/novamesh, with its request message from the descriptor set. */
async function allMethods(): Promise<Method[]> {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, await readFile(join(REPO, "gen/novamesh.binpb"))));
  const files: string[] = [];
  const walk = async (dir: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(dir, e.name));
      else if (e.name.endsWith(".ts")) files.push(join(dir, e.name));
    }
  };
  await walk(join(REPO, "gen/novamesh"));
  const out: Method[] = [];
  for (const file of files.sort()) {
    const mod = (await import(file)) as Record<string, unknown>;
    for (const [exportName, def] of Object.entries(mod)) {
      if (!exportName.endsWith("Service") || !def || typeof def !== "object") continue;
      for (const m of Object.values(def as Record<string, { path?: string; requestStream?: boolean; responseStream?: boolean }>)) {
        if (typeof m?.path !== "string") continue;
        const [, service, name] = /^\/([^/]+)\/([^/]+)$/.exec(m.path)!;
        const desc = registry.getService(service!)?.methods.find((x) => x.name === name);
        assert.ok(desc, `${m.path} is in the descriptor set`);
        out.push({ service: service!, name: name!, path: m.path, requestStream: !!m.requestStream, responseStream: !!m.responseStream, input: desc.input });
      }
    }
  }
  return out;
}

/** Builds request bytes: random bytes, or a message of `desc` with extreme values. */
class Mutator {
  private budget = 0;
  /** How likely a value is an extreme one; otherwise it is a plausible one. */
  private wild = 1;

  constructor(
    private readonly rnd: () => number,
    private readonly known: readonly string[],
  ) {}

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)]!;
  }

  private chance(p: number): boolean {
    return this.rnd() < p;
  }

  randomBytes(): Uint8Array {
    const n = this.pick([0, 1, 2, 5, 16, 100, 1000, 4096]);
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.rnd() * 256);
    return b;
  }

  /** A message of `desc`: every value extreme, or (`plausible`) most of them plausible and a few extreme. */
  message(desc: DescMessage, plausible = false): Uint8Array {
    this.budget = 4 * 1024 * 1024;
    this.wild = plausible ? 0.1 : 1;
    const w = new BinaryWriter();
    this.fields(w, desc, 0);
    return w.finish();
  }

  private string(): string {
    if (!this.chance(this.wild)) return this.pick([...this.known, "fuzz-a", "nova", "m1.small", crypto.randomUUID()]);
    const r = this.rnd();
    if (r < 0.25) return this.pick(this.known);
    if (r < 0.3 && this.budget > 1 << 20) {
      this.budget -= 1 << 20;
      return this.pick(["x", "é", "a-"]).repeat(this.pick([1 << 20, 1 << 19]));
    }
    if (r < 0.4 && this.budget > 65536) {
      this.budget -= 65536;
      // Past a limit in characters, or within it in characters but past it in bytes.
      return this.pick(["y", "é", "💥"]).repeat(this.pick([129, 256, 1025, 4096, 32_000, 40_000, 65_536]));
    }
    if (r < 0.6) {
      let s = "";
      const n = this.pick([1, 3, 10, 64, 300]);
      for (let i = 0; i < n; i++) s += String.fromCodePoint(this.pick([0, 0x1f, 0x7f, 0x85, 0xa0, 0x202e, 0xfeff, 0xd800, 0xdfff, 0x1f4a5, 0x10ffff, 0x41 + Math.floor(this.rnd() * 26)]));
      return s;
    }
    return this.pick(["", " ", "a", "A", "-", "00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "'; DROP TABLE instances; --", "%", "_", "\\", "../../etc/passwd", "null", "[]", "{}", "1e400", "NaN", "servers//operations/", "m1.tiny", "nova", "admin", "ROLE_ADMIN"]);
  }

  private scalar(w: BinaryWriter, no: number, t: ScalarType): void {
    const p = <T>(xs: readonly T[]) => this.pick(xs);
    const I64 = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n + 1n, 9_007_199_254_740_991n, 1000n];
    const U64 = [0n, 1n, 2n ** 64n - 1n, 2n ** 53n + 1n, 2n ** 63n, 5n, 1000n];
    if (t !== ScalarType.STRING && t !== ScalarType.BYTES && !this.chance(this.wild)) {
      // A plausible value: small and positive, written as the field's type.
      const small = p([0, 1, 2, 10, 60]);
      if (t === ScalarType.DOUBLE) return void w.tag(no, WireType.Bit64).double(small);
      if (t === ScalarType.FLOAT) return void w.tag(no, WireType.Bit32).float(small);
      if (t === ScalarType.BOOL) return void w.tag(no, WireType.Varint).bool(this.chance(0.5));
      if (t === ScalarType.FIXED64 || t === ScalarType.SFIXED64) return void w.tag(no, WireType.Bit64).fixed64(small);
      if (t === ScalarType.FIXED32 || t === ScalarType.SFIXED32) return void w.tag(no, WireType.Bit32).fixed32(small);
      if (t === ScalarType.SINT32) return void w.tag(no, WireType.Varint).sint32(small);
      if (t === ScalarType.SINT64) return void w.tag(no, WireType.Varint).sint64(small);
      return void w.tag(no, WireType.Varint).uint32(small);
    }
    switch (t) {
      case ScalarType.DOUBLE:
        return void w.tag(no, WireType.Bit64).double(p([NaN, Infinity, -Infinity, -0, 1e308, -1e308, 5e-324, 0.5, 1, -1, 0]));
      case ScalarType.FLOAT:
        return void w.tag(no, WireType.Bit32).float(p([NaN, Infinity, -Infinity, 0, 3.4e38, -1, 0.1]));
      case ScalarType.INT64:
        return void w.tag(no, WireType.Varint).int64(p(I64));
      case ScalarType.SINT64:
        return void w.tag(no, WireType.Varint).sint64(p(I64));
      case ScalarType.SFIXED64:
        return void w.tag(no, WireType.Bit64).sfixed64(p(I64));
      case ScalarType.UINT64:
        return void w.tag(no, WireType.Varint).uint64(p(U64));
      case ScalarType.FIXED64:
        return void w.tag(no, WireType.Bit64).fixed64(p(U64));
      case ScalarType.INT32:
        return void w.tag(no, WireType.Varint).int32(p([0, 1, -1, 2147483647, -2147483648, 100, 1000, 1001, 10000, 65536]));
      case ScalarType.SINT32:
        return void w.tag(no, WireType.Varint).sint32(p([0, 1, -1, 2147483647, -2147483648]));
      case ScalarType.SFIXED32:
        return void w.tag(no, WireType.Bit32).sfixed32(p([0, -1, 2147483647, -2147483648]));
      case ScalarType.UINT32:
        return void w.tag(no, WireType.Varint).uint32(p([0, 1, 4294967295, 1000, 65536]));
      case ScalarType.FIXED32:
        return void w.tag(no, WireType.Bit32).fixed32(p([0, 1, 4294967295]));
      case ScalarType.BOOL:
        return void w.tag(no, WireType.Varint).bool(this.chance(0.5));
      case ScalarType.STRING:
        return void w.tag(no, WireType.LengthDelimited).string(this.string());
      case ScalarType.BYTES: {
        const big = this.budget > 1 << 20 && this.chance(0.1);
        if (big) this.budget -= 1 << 20;
        return void w.tag(no, WireType.LengthDelimited).bytes(big ? new Uint8Array(1 << 20) : this.randomBytes());
      }
    }
  }

  private enumValue(w: BinaryWriter, no: number, values: readonly number[]): void {
    const known = values.filter((v) => v !== 0);
    w.tag(no, WireType.Varint).int32(!this.chance(this.wild) && known.length ? this.pick(known) : this.chance(0.5) ? this.pick(values) : this.pick([-1, 999, 2147483647, -2147483648]));
  }

  private nested(w: BinaryWriter, no: number, desc: DescMessage, depth: number): void {
    w.tag(no, WireType.LengthDelimited).fork();
    if (depth < 4) this.fields(w, desc, depth + 1);
    w.join();
  }

  private count(scalar: boolean): number {
    if (!this.chance(this.wild)) return this.pick([0, 1, 2]);
    return this.pick(scalar ? [0, 1, 2, 5, 100, 2000] : [0, 1, 2, 5, 50]);
  }

  private fields(w: BinaryWriter, desc: DescMessage, depth: number): void {
    // One member of each oneof (or none), so that every member gets its turn.
    const chosen = new Set(desc.oneofs.map((o) => this.pick(o.fields)));
    for (const f of desc.fields) {
      if (f.oneof ? !chosen.has(f) || !this.chance(0.9) : !this.chance(0.65)) continue;
      this.field(w, f, depth);
    }
    // Fields this message does not have.
    if (this.chance(0.15)) w.tag(this.pick([99, 1000, 536870911]), WireType.Varint).uint64(this.pick([0n, 2n ** 64n - 1n]));
  }

  private field(w: BinaryWriter, f: DescField, depth: number): void {
    const no = f.number;
    switch (f.fieldKind) {
      case "scalar":
        return this.scalar(w, no, f.scalar);
      case "enum":
        return this.enumValue(w, no, f.enum.values.map((v) => v.number));
      case "message":
        return this.nested(w, no, f.message, depth);
      case "list": {
        const n = this.count(f.listKind !== "message");
        for (let i = 0; i < n && this.budget > 0; i++) {
          if (f.listKind === "scalar") this.scalar(w, no, f.scalar);
          else if (f.listKind === "enum") this.enumValue(w, no, f.enum.values.map((v) => v.number));
          else this.nested(w, no, f.message, depth);
          this.budget -= 16;
        }
        return;
      }
      case "map": {
        const n = this.chance(this.wild) ? this.pick([0, 1, 3, 129, 300]) : this.pick([0, 1, 2]);
        for (let i = 0; i < n && this.budget > 0; i++) {
          w.tag(no, WireType.LengthDelimited).fork();
          this.scalar(w, 1, f.mapKey);
          if (f.mapKind === "scalar") this.scalar(w, 2, f.scalar);
          else if (f.mapKind === "enum") this.enumValue(w, 2, f.enum.values.map((v) => v.number));
          else this.nested(w, 2, f.message, depth);
          w.join();
          this.budget -= 32;
        }
        return;
      }
    }
  }
}

type Outcome = { code: number | "OPEN" };

/** Sends one request (or, for a client stream, a few messages) and says how the call ended. */
function call(client: grpc.Client, m: Method, messages: Uint8Array[], md: grpc.Metadata): Promise<Outcome> {
  const id = (b: Buffer) => b;
  const deadline = Date.now() + DEADLINE_MS;
  return new Promise((resolve) => {
    const done = (err: grpc.ServiceError | null) => resolve({ code: err ? err.code : grpc.status.OK });
    if (!m.requestStream && !m.responseStream) {
      client.makeUnaryRequest(m.path, id, id, Buffer.from(messages[0]!), md, { deadline }, (err) => done(err));
      return;
    }
    if (m.requestStream && !m.responseStream) {
      const c = client.makeClientStreamRequest(m.path, id, id, md, { deadline }, (err) => done(err));
      for (const msg of messages) c.write(Buffer.from(msg));
      c.end();
      return;
    }
    const s = m.requestStream
      ? client.makeBidiStreamRequest(m.path, id, id, md, { deadline })
      : client.makeServerStreamRequest(m.path, id, id, Buffer.from(messages[0]!), md, { deadline });
    let settled = false;
    const timer = m.requestStream
      ? undefined
      : setTimeout(() => {
          // A server stream that is still open waits for events: the client is done with it.
          settled = true;
          s.cancel();
          resolve({ code: "OPEN" });
        }, OPEN_STREAM_MS);
    s.on("data", () => undefined);
    s.on("error", () => undefined);
    s.on("status", (st: grpc.StatusObject) => {
      clearTimeout(timer);
      if (!settled) resolve({ code: st.code });
      settled = true;
    });
    if (m.requestStream) {
      const w = s as grpc.ClientDuplexStream<Buffer, Buffer>;
      for (const msg of messages) w.write(Buffer.from(msg));
      w.end();
    }
  });
}

/** The controller's resident memory in bytes (Linux). */
async function rss(pid: number): Promise<number> {
  const st = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(st)![1]) * 1024;
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

describe("fuzzing the API", () => {
  const env = new TestEnv();
  let child: ChildProcess | undefined;
  const logFile = `${tempDirPath("fuzz")}.log`;
  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    await env.cleanup();
    await rm(logFile, { force: true });
  });

  test(`${REQUESTS} fuzzed requests over every RPC: no INTERNAL, no UNKNOWN, no hang, memory back within 2× (seed ${SEED})`, async (t) => {
    console.log(`fuzz seed ${SEED} (repeat with NOVAMESH_FUZZ_SEED=${SEED})`);
    const methods = await allMethods();
    const services = new Set(methods.map((m) => m.service));
    assert.ok(services.has("novamesh.agent.v1.AgentService") && services.has("novamesh.compute.v1.ServerService"), [...services].join(", "));

    // The controller in its own process, with a signal that collects its garbage.
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const cfg = env.config();
    const log = createWriteStream(logFile);
    child = spawn(
      process.execPath,
      ["--expose-gc", "--import", 'data:text/javascript,process.on("SIGUSR2", () => { globalThis.gc(); console.error("fuzz-gc " + JSON.stringify(process.memoryUsage())); })', "--import", "tsx", join(REPO, "controller/main.ts")],
      {
        cwd: REPO,
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          NOVAMESH_LISTEN: address,
          NOVAMESH_DATABASE_URL: `${MYSQL_URL}/${env.dbName}`,
          NOVAMESH_NATS_URL: NATS_URL,
          NOVAMESH_OPS_STREAM: cfg.opsStream!,
          NOVAMESH_OPS_SUBJECT_PREFIX: cfg.opsSubjectPrefix!,
          NOVAMESH_IMAGE_BUCKET: cfg.imageBucket!,
          NOVAMESH_ADMIN_TOKEN: env.adminToken,
          NOVAMESH_LOG_LEVEL: "error",
          NOVAMESH_PLAINTEXT: "1",
        },
      },
    );
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    const pid = child.pid!;
    const admin = clients(address, env.adminToken);
    await eventually(() => admin.flavors.listFlavors({}).then(() => true), { timeoutMs: 60_000, what: "the controller to answer" });

    // Something real for mutated requests to point at.
    const memberToken = (await admin.identity.createToken({ projectId: "fuzz", role: 2, description: "fuzz" })).secret;
    const member = clients(address, memberToken);
    const imageId = (await admin.images.registerImage({ image: { id: "", name: "fuzz", visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC, diskFormat: "qcow2", containerFormat: "bare", status: 0, sizeBytes: 0, checksum: "", minDiskGb: 0, minRamMb: 0, properties: {}, projectId: "", hasData: false, createTime: undefined } })).image!.id;
    const serverId = (await member.servers.createServer({ name: "fuzz", flavorId: "m1.tiny", imageId })).server!.id;
    const known = [imageId, serverId, `servers/${serverId}/operations/x`, "m1.tiny", "fuzz", memberToken.slice(0, 8)];

    /** Collects the controller's garbage; returns its heap in use as it then says. */
    const gc = async () => {
      process.kill(pid, "SIGUSR2");
      await new Promise((r) => setTimeout(r, 1000));
      const said = (await readFile(logFile, "utf8")).split("\n").filter((l) => l.startsWith("fuzz-gc ")).at(-1);
      return said ? (JSON.parse(said.slice("fuzz-gc ".length)) as NodeJS.MemoryUsage) : undefined;
    };
    for (let i = 0; i < 20; i++) await member.servers.listServers({});
    const heapBefore = await gc();
    const before = await rss(pid);

    const identities: { name: string; md: () => grpc.Metadata }[] = [
      { name: "no token", md: () => new grpc.Metadata() },
      { name: "member", md: () => member.servers.metadata() },
      { name: "admin", md: () => admin.servers.metadata() },
    ];
    const client = new grpc.Client(address, grpc.credentials.createInsecure(), { "grpc.max_send_message_length": 32 * 1024 * 1024 });
    const counts = new Map<string, number>();
    const perMethod = new Map<string, number>();
    const bad: string[] = [];
    let next = 0;
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= REQUESTS) return;
        const rnd = prng(SEED ^ Math.imul(i + 1, 0x9e3779b1));
        const m = methods[i % methods.length]!;
        const who = identities[Math.floor(rnd() * identities.length)]!;
        const mut = new Mutator(rnd, known);
        const mode = rnd();
        const raw = mode < 0.15;
        const plausible = mode >= 0.5;
        const n = m.requestStream ? 1 + Math.floor(rnd() * 4) : 1;
        const messages = Array.from({ length: n }, () => (raw ? mut.randomBytes() : mut.message(m.input, plausible)));
        const { code } = await call(client, m, messages, who.md());
        const name = code === "OPEN" ? "OPEN" : grpc.status[code]!;
        counts.set(name, (counts.get(name) ?? 0) + 1);
        if (code !== grpc.status.UNIMPLEMENTED) perMethod.set(m.path, (perMethod.get(m.path) ?? 0) + 1);
        if (code === grpc.status.INTERNAL || code === grpc.status.UNKNOWN || code === grpc.status.DEADLINE_EXCEEDED) {
          bad.push(`#${i} ${m.path} as ${who.name} (${raw ? "random bytes" : plausible ? "plausible message" : "extreme message"}): ${name}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    client.close();

    // The controller still answers, and gave back what the requests took.
    const tail = async () => (await readFile(logFile, "utf8")).split("\n").slice(-15).join("\n");
    assert.equal(child.exitCode, null, `the controller is still running (seed ${SEED}); its last words:\n${child.exitCode === null ? "" : await tail()}`);
    assert.ok((await admin.flavors.listFlavors({})).flavors.length > 0);
    await gc();
    const heapAfter = await gc();
    const afterRss = await rss(pid);

    const figures = [
      `fuzz: ${REQUESTS} requests over ${methods.length} methods of ${services.size} services, seed ${SEED}`,
      `codes: ${[...counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ")}`,
      `controller RSS: ${mib(before)} before, ${mib(afterRss)} after (${(afterRss / before).toFixed(2)}×); after collection: heap in use ${mib(heapBefore?.heapUsed ?? NaN)} before, ${mib(heapAfter?.heapUsed ?? NaN)} after; heap ${mib(heapBefore?.heapTotal ?? NaN)} → ${mib(heapAfter?.heapTotal ?? NaN)}, outside the heap ${mib(heapBefore?.external ?? NaN)} → ${mib(heapAfter?.external ?? NaN)}`,
    ];
    for (const line of figures) {
      console.log(line);
      t.diagnostic(line);
    }
    const internals = (await readFile(logFile, "utf8")).split("\n").filter((l) => l.includes('"level":50')).slice(0, 5);
    assert.deepEqual(bad.slice(0, 20), [], `calls answered INTERNAL, UNKNOWN or not at all (seed ${SEED}):\n${bad.slice(0, 20).join("\n")}\n${internals.join("\n")}`);
    for (const m of methods) assert.ok((perMethod.get(m.path) ?? 0) > 0, `${m.path} was called and is served`);
    assert.ok(afterRss <= 2 * before, `controller RSS ${mib(afterRss)} after the fuzz, more than twice the ${mib(before)} before`);
  });
});
