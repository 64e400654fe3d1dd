/**
 * Clients in other languages (docs/sdk.md): the page's generation and build
 * commands run as written (with HOME in a temp dir, where they write), on
 * Debian's protoc and plugins and without Node's proto dependencies; then the
 * example Python and Go clients create a server through a live controller
 * and fake agent over TLS (verified with the stack's CA through
 * NOVAMESH_TLS_CA), wait on its operation until ACTIVE, and read the
 * google.rpc.BadRequest of a bad request from the error's trailers.
 *
 * Needs Debian's packages (scripts/setup-sdk.sh installs them); without them
 * the tests skip, unless NOVAMESH_SDK_REQUIRED=1 (as in `npm test`).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { REPO } from "./agents.js";
import { stack } from "./stack.js";

const REQUIRED = process.env.NOVAMESH_SDK_REQUIRED === "1";
const PYTHON = "/usr/bin/python3";

/** What a test needs that is not there; a reason to skip (or to fail, when required). */
function missing(paths: string[]): string | false {
  const absent = paths.filter((p) => !existsSync(p));
  return absent.length ? `not installed: ${absent.join(", ")} (bash scripts/setup-sdk.sh)` : false;
}
const pythonMissing = missing(["/usr/bin/protoc", "/usr/bin/grpc_python_plugin", PYTHON, "/usr/lib/python3/dist-packages/grpc", "/usr/lib/python3/dist-packages/google/protobuf"]);
const goMissing = missing([
  "/usr/bin/protoc",
  "/usr/bin/go",
  "/usr/bin/protoc-gen-go",
  "/usr/bin/protoc-gen-go-grpc",
  "/usr/share/gocode/src/google.golang.org/grpc",
  "/usr/share/gocode/src/google.golang.org/genproto/googleapis/rpc/errdetails",
  // The 1.4+ series of github.com/golang/protobuf (1.3's cannot decode today's generated code).
  "/usr/share/gocode/src/github.com/golang/protobuf/proto/registry.go",
]);
const skip = (why: string | false) => (REQUIRED ? false : why);

/** The docs' shell block whose first line is `# <title>`. */
async function docBlock(title: string): Promise<string> {
  const doc = await readFile(join(REPO, "docs/sdk.md"), "utf8");
  const blocks = [...doc.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  const block = blocks.find((b) => b.startsWith(`# ${title}\n`));
  assert.ok(block, `docs/sdk.md has a sh block titled "# ${title}"`);
  return block;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: REPO, env, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function ok(r: Run, what: string): string {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** What both example clients print for a server built and a bad request refused. */
function assertClientOutput(out: string, host: string): void {
  assert.match(out, /^created [0-9a-f-]{36} SERVER_STATUS_BUILD$/m);
  assert.match(out, /^operation servers\/[0-9a-f-]{36}\/operations\/\S+$/m);
  assert.match(out, /^operation OPERATION_STATE_SUCCEEDED$/m);
  assert.match(out, new RegExp(`^server [0-9a-f-]{36} SERVER_STATUS_ACTIVE on ${host}$`, "m"));
  assert.match(out, /^error (INVALID_ARGUMENT|InvalidArgument) /m);
  assert.match(out, /^error info \S+ novamesh\.io$/m);
  assert.match(out, /^bad request field name: /m);
}

describe("clients generated from the protos (docs/sdk.md)", () => {
  const fx = stack({ name: "sdk", members: [], tls: true, agents: ({ id }) => [{ host: `sdk${id}` }] });
  let home: string;
  // The doc's commands write under ~: a temp HOME; Go keeps its usual build cache.
  let env: NodeJS.ProcessEnv;

  before(async () => {
    home = await mkdtemp(join(tmpdir(), "novamesh-sdk-"));
    env = { ...process.env, HOME: home, GOCACHE: process.env.GOCACHE ?? join(homedir(), ".cache", "go-build") };
  });
  after(() => rm(home, { recursive: true, force: true }));

  test("Python: generated with Debian's protoc and grpc_python_plugin, the client creates a server and reads a BadRequest", { skip: skip(pythonMissing) }, async () => {
    assert.equal(pythonMissing, false, pythonMissing || "");
    ok(await run("bash", ["-euo", "pipefail", "-c", await docBlock("Python: generate the client code into ~/novamesh-sdk/python")], env, 60_000), "generating the Python code");
    const out = join(home, "novamesh-sdk", "python");
    for (const f of ["novamesh/compute/v1/server_pb2.py", "novamesh/compute/v1/server_pb2_grpc.py", "google/rpc/status_pb2.py", "google/rpc/error_details_pb2.py"]) {
      assert.ok(existsSync(join(out, f)), `generated ${f}`);
    }
    const address = fx.env.address(fx.ctl);
    const stdout = ok(await run(PYTHON, ["scripts/sdk/client.py", address, fx.env.adminToken, fx.imageId], { ...env, PYTHONPATH: out, NOVAMESH_TLS_CA: fx.env.tls!.ca }, 90_000), "the Python client");
    assertClientOutput(stdout, fx.hosts[0]!);
  });

  test("Go: generated with protoc-gen-go and protoc-gen-go-grpc, built offline in GOPATH mode, the client does the same", { skip: skip(goMissing) }, async () => {
    assert.equal(goMissing, false, goMissing || "");
    ok(await run("bash", ["-euo", "pipefail", "-c", await docBlock("Go: generate the client code into the GOPATH ~/novamesh-sdk/go")], env, 60_000), "generating the Go code");
    assert.ok(existsSync(join(home, "novamesh-sdk/go/src/github.com/novamesh/novamesh/gen/go/novamesh/compute/v1/server_grpc.pb.go")), "generated at the go_package path");
    // No module proxy: a build that tried to reach one fails here.
    ok(await run("bash", ["-euo", "pipefail", "-c", await docBlock("Go: build the example client")], { ...env, GOPROXY: "off" }, 240_000), "building the Go client");
    const address = fx.env.address(fx.ctl);
    const stdout = ok(await run(join(home, "novamesh-sdk", "novamesh-go-client"), [address, fx.env.adminToken, fx.imageId], { ...env, NOVAMESH_TLS_CA: fx.env.tls!.ca }, 90_000), "the Go client");
    assertClientOutput(stdout, fx.hosts[0]!);
  });
});
