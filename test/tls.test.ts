/**
 * TLS on the gRPC API and on the agent stream, with real certificates made
 * by scripts/certs.sh (openssl) and real handshakes: who gets through, who
 * is refused, and what a bad certificate file does to a start.
 */
import assert from "node:assert/strict";
import { execFile, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { credentials, Metadata, status, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import { AgentServiceClient, ConnectRequest } from "../gen/novamesh/agent/v1/agent.js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { REPO, spawnAgent, stopAgent, tempDirPath } from "./agents.js";
import { clients, eventually, failure, makeCerts, servicesUp, settled, tlsCredentials, type TlsFiles } from "./harness.js";
import { stack, testEnv } from "./stack.js";
import { readFile } from "node:fs/promises";

const run = promisify(execFile);

/** Opens AgentService/Connect at `address` and says Hello as `host`; resolves how the stream ended (null: a HelloAck came). */
function hello(address: string, creds: ChannelCredentials, token: string, host: string): Promise<ServiceError | null> {
  const client = new AgentServiceClient(address, creds);
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  const call = client.connect(md);
  return new Promise<ServiceError | null>((resolve) => {
    call.on("error", (err: ServiceError) => resolve(err));
    call.on("data", () => {
      resolve(null);
      call.cancel();
    });
    call.write(ConnectRequest.fromPartial({ body: { $case: "hello", hello: { host, hypervisorType: "fake", capacity: { vcpus: 4, memoryMb: 4096, diskGb: 10 } } } }));
  }).finally(() => client.close());
}

/** Runs a command line of the repository to its end; its exit code and output. */
async function outcome(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const r = await run(process.execPath, ["--import", "tsx", ...args], { cwd: REPO, timeout: 60_000, env: { ...process.env, NOVAMESH_PLAINTEXT: "", NOVAMESH_LOG_LEVEL: "info" } });
    return { code: 0, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

describe("TLS on the public API", () => {
  const fx = stack({ name: "tls", members: [], tls: true, agents: ({ id }) => [{ host: `tls${id}` }] });
  let other: TlsFiles;

  before(async () => {
    other = await makeCerts(join(fx.dir, "other-ca"));
  });

  test("a client that trusts the CA works", async () => {
    const flavors = await fx.admin.flavors.listFlavors({});
    assert.ok(flavors.flavors.some((f) => f.name === "m1.tiny"));
  });

  test("a plaintext client is refused (UNAVAILABLE)", async () => {
    const f = await failure(clients(fx.env.address(fx.ctl), fx.env.adminToken, credentials.createInsecure()).flavors.listFlavors({}));
    assert.equal(f.code, status.UNAVAILABLE);
  });

  test("a client that trusts another CA is refused (UNAVAILABLE)", async () => {
    const f = await failure(clients(fx.env.address(fx.ctl), fx.env.adminToken, tlsCredentials(other.ca)).flavors.listFlavors({}));
    assert.equal(f.code, status.UNAVAILABLE);
    assert.match(f.message, /certificate/i);
  });

  test("an agent verifying the controller with --tls-ca runs a server to ACTIVE", async () => {
    const s = await fx.boot("tls-1");
    assert.equal(s.host, fx.hosts[0]);
  });
});

describe("client certificates on the public port (--tls-client-ca)", () => {
  const env = testEnv();
  const dir = tempDirPath("tls-client-ca");
  after(() => run("rm", ["-rf", dir]));

  test("a client without a certificate is refused (UNAVAILABLE); one with a certificate of the CA works", async () => {
    env.tls = await makeCerts(dir, ["ops-console"]);
    const ctl = await env.startController({ tlsClientCa: env.tls.ca });
    const without = await failure(clients(env.address(ctl), env.adminToken, tlsCredentials(env.tls.ca)).flavors.listFlavors({}));
    assert.equal(without.code, status.UNAVAILABLE);
    const withCert = clients(env.address(ctl), env.adminToken, tlsCredentials(env.tls.ca, env.tls.agent("ops-console")));
    assert.ok((await withCert.flavors.listFlavors({})).flavors.length > 0);
  });
});

describe("mutual TLS on the agent listener", () => {
  const fx = stack({ name: "mtls", members: [], tls: true, fixedPort: true });
  const host = `mtls${fx.env.id}`;
  let certs: TlsFiles;
  let other: TlsFiles;
  const procs: ChildProcess[] = [];

  before(async () => {
    // The stack started its controller with the certificates alone; this one has the agent listener.
    // The CA is kept; the agents' certificates are added to it.
    certs = await makeCerts(fx.env.tls!.dir, [host, "someone-else"]);
    other = await makeCerts(join(fx.dir, "other-ca"), [host]);
    await fx.stopController();
    await fx.startController({ agentListen: "127.0.0.1:0", agentClientCa: certs.ca });
  });
  after(async () => {
    for (const p of procs) await stopAgent(p);
  });

  const agentAddress = () => `127.0.0.1:${fx.ctl.agentPort}`;

  test("an agent with a client certificate for its host connects there and runs a server to ACTIVE", async () => {
    const mine = certs.agent(host);
    procs.push(
      spawnAgent({
        controller: agentAddress(),
        token: fx.env.adminToken,
        logFile: join(fx.dir, `${host}.log`),
        connection: ["--tls-ca", certs.ca, "--tls-cert", mine.cert, "--tls-key", mine.key],
        args: ["--host", host, "--state-dir", join(fx.dir, host), "--driver", "fake"],
      }),
    );
    await servicesUp(fx.admin, 1);
    const created = (await fx.admin.servers.createServer({ name: "mtls-1", flavorId: "m1.small", imageId: fx.imageId })).server!;
    const s = await settled(fx.admin, created.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(s.host, host);
  });

  test("without a client certificate the agent listener refuses the connection (UNAVAILABLE)", async () => {
    const err = await hello(agentAddress(), tlsCredentials(certs.ca), fx.env.adminToken, host);
    assert.equal(err?.code, status.UNAVAILABLE, err?.details);
  });

  test("a client certificate from another CA is refused (UNAVAILABLE)", async () => {
    const err = await hello(agentAddress(), tlsCredentials(certs.ca, other.agent(host)), fx.env.adminToken, host);
    assert.equal(err?.code, status.UNAVAILABLE, err?.details);
  });

  test("a certificate issued to another host cannot say Hello as this one (PERMISSION_DENIED)", async () => {
    const err = await hello(agentAddress(), tlsCredentials(certs.ca, certs.agent("someone-else")), fx.env.adminToken, host);
    assert.equal(err?.code, status.PERMISSION_DENIED);
    assert.match(err!.details, /issued to "someone-else", not to host "mtls/);
  });

  test("the public listener no longer offers AgentService (UNIMPLEMENTED)", async () => {
    const err = await hello(fx.env.address(fx.ctl), tlsCredentials(certs.ca, certs.agent(host)), fx.env.adminToken, host);
    assert.equal(err?.code, status.UNIMPLEMENTED);
  });
});

describe("bad TLS configuration stops a start with the flag named", () => {
  const dir = tempDirPath("tls-config");
  let certs: TlsFiles;
  let other: TlsFiles;
  const controller = (...flags: string[]) => outcome(["controller/main.ts", "--admin-token", "x", "--listen", "127.0.0.1:0", ...flags]);
  const noStack = (stderr: string) => assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");

  before(async () => {
    certs = await makeCerts(join(dir, "a"));
    other = await makeCerts(join(dir, "b"));
  });
  after(() => run("rm", ["-rf", dir]));

  test("a controller without a certificate needs --plaintext", async () => {
    const r = await controller();
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--tls-cert and --tls-key .* or --plaintext/);
    noStack(r.stderr);
  });

  test("a missing certificate file names --tls-cert", async () => {
    const r = await controller("--tls-cert", join(dir, "missing.pem"), "--tls-key", certs.key);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--tls-cert: cannot read .*missing\.pem: no such file/);
    noStack(r.stderr);
  });

  test("a key that does not match the certificate names --tls-key", async () => {
    const r = await controller("--tls-cert", certs.cert, "--tls-key", other.key);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--tls-key: the key in .* does not match the certificate/);
    noStack(r.stderr);
  });

  test("an agent with a missing CA file names --tls-ca", async () => {
    const r = await outcome(["agent/main.ts", "--tls-ca", join(dir, "missing.pem"), "--state-dir", join(dir, "agent")]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--tls-ca: cannot read .*missing\.pem: no such file/);
    noStack(r.stderr);
  });
});

describe("an agent that expects TLS from a plaintext controller", () => {
  const env = testEnv();
  const dir = tempDirPath("tls-plain");
  after(() => run("rm", ["-rf", dir]));

  test("does not connect, and says the controller is not speaking TLS and what to do", async () => {
    const ctl = await env.startController();
    const host = `plain${env.id}`;
    const logFile = `${dir}.log`;
    const agent = spawnAgent({ controller: env.address(ctl), token: env.adminToken, logFile, connection: [], args: ["--host", host, "--state-dir", dir, "--driver", "fake"] });
    try {
      const line = await eventually(async () => (await readFile(logFile, "utf8").catch(() => "")).split("\n").find((l) => l.includes("could not connect to the controller")), {
        what: "the agent's connection error",
      });
      assert.match(JSON.parse(line).hint, /does not answer with TLS at this address: if it runs with --plaintext, give the agent --plaintext too/);
      assert.equal((await env.admin(ctl).hosts.listServices({})).services.length, 0, "no host registered");
    } finally {
      await stopAgent(agent);
      await run("rm", ["-f", logFile]);
    }
  });
});
