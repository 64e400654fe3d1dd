/**
 * Runs the README's grpcurl examples with a generic reflection client (for
 * machines without grpcurl): every type comes from the server's reflection,
 * nothing from this repository's generated code.
 *
 *   NOVAMESH_ADMIN_TOKEN=... npx tsx scripts/readme-examples.ts [address]
 *
 * grpcurl's connection flags are honoured as written: -plaintext, -insecure,
 * -cacert, -cert, -key, -servername, -authority (files relative to the
 * current directory).
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { GrpcReflection } from "grpc-js-reflection-client";
import { clientCredentials, type ClientTls } from "../agent/tls.js";

export interface Example {
  readonly line: string;
  /** How the line connects: its -plaintext, -insecure, -cacert, -cert, -key, -servername and -authority. */
  readonly tls: ClientTls;
  readonly auth: boolean;
  readonly body: Record<string, unknown> | null;
  readonly target: string;
}

/** The outcome of each example: services listed, symbols described, call responses by method. */
export interface ExampleResults {
  readonly services: string[];
  readonly described: string[];
  readonly responses: Map<string, unknown>;
  /** Streaming calls that stayed open (no error) for half a second. */
  readonly streamed: string[];
}

const README = fileURLToPath(new URL("../README.md", import.meta.url));
const ADDRESS = "127.0.0.1:8774";

/** A shell line's words: single quotes keep everything, double quotes keep all but `$VAR` (left as written). */
function words(line: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:'([^']*)'|"([^"]*)"|([^\s'"]+))/gy;
  let cur: string | null = null;
  let last = 0;
  for (let m = re.exec(line); m; m = re.exec(line)) {
    const piece = m[1] ?? m[2] ?? m[3] ?? "";
    const spaced = m.index === 0 || /^\s/.test(m[0]);
    if (cur !== null && spaced) {
      out.push(cur);
      cur = null;
    }
    cur = (cur ?? "") + piece;
    last = re.lastIndex;
  }
  if (cur !== null) out.push(cur);
  if (line.slice(last).trim()) throw new Error("unbalanced quotes");
  return out;
}

/** One grpcurl line, parsed: flags, the address (it must be the README's), then the target. */
export function parseGrpcurl(line: string): Example {
  const w = words(line);
  if (w.shift() !== "grpcurl") throw new Error("not a grpcurl line");
  const tls: { -readonly [K in keyof ClientTls]: ClientTls[K] } = {};
  let auth = false;
  let body: Record<string, unknown> | null = null;
  for (;;) {
    const flag = w[0];
    if (flag === undefined || !flag.startsWith("-")) break;
    w.shift();
    const value = () => {
      const v = w.shift();
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "-plaintext": tls.plaintext = true; break;
      case "-insecure": tls.insecure = true; break;
      case "-cacert": tls.ca = value(); break;
      case "-cert": tls.cert = value(); break;
      case "-key": tls.key = value(); break;
      case "-servername": tls.serverName = value(); break;
      case "-authority": tls.authority = value(); break;
      case "-H": {
        const h = value();
        if (h !== "authorization: Bearer $TOKEN") throw new Error(`header ${JSON.stringify(h)} not understood`);
        auth = true;
        break;
      }
      case "-d": body = JSON.parse(value()) as Record<string, unknown>; break;
      default: throw new Error(`flag ${flag} not understood`);
    }
  }
  if (tls.plaintext && (tls.insecure || tls.ca || tls.cert || tls.key)) throw new Error("-plaintext with TLS flags");
  if (w.shift() !== ADDRESS) throw new Error(`the address must be ${ADDRESS}`);
  const target = w.join(" ");
  if (!target || w.length > 2) throw new Error("no target, or more than one");
  return { line, tls, auth, body, target };
}

/** The grpcurl commands of the README, parsed; an unparseable one throws. */
export async function readmeExamples(): Promise<Example[]> {
  const out: Example[] = [];
  for (const line of (await readFile(README, "utf8")).split("\n")) {
    if (!line.startsWith("grpcurl ")) continue;
    try {
      out.push(parseGrpcurl(line));
    } catch (err) {
      throw new Error(`README example not understood (${(err as Error).message}): ${line}`);
    }
  }
  return out;
}

/** Channel credentials and options for an example's flags, its files taken relative to `cwd`. */
function connection(ex: Example, cwd: string) {
  const at = (f: string | undefined) => (f === undefined ? undefined : resolve(cwd, f));
  const flags = { plaintext: "-plaintext", ca: "-cacert", cert: "-cert", key: "-key" };
  return clientCredentials({ ...ex.tls, ca: at(ex.tls.ca), cert: at(ex.tls.cert), key: at(ex.tls.key) }, flags);
}

/**
 * Runs every example against `address` with `token` standing for $TOKEN; a
 * failing call throws. Files the lines name (-cacert …) are relative to `cwd`.
 */
export async function runExamples(examples: readonly Example[], address: string, token: string, cwd = process.cwd()): Promise<ExampleResults> {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  const results: ExampleResults = { services: [], described: [], responses: new Map(), streamed: [] };
  for (const ex of examples) {
    const { credentials, channelOptions } = connection(ex, cwd);
    const reflection = new GrpcReflection(address, credentials, channelOptions, "v1");
    if (ex.target === "list") {
      results.services.push(...(await reflection.listServices()).map((s) => (typeof s === "string" ? s : (s as { name: string }).name)));
      continue;
    }
    if (ex.target.startsWith("describe ")) {
      const symbol = ex.target.slice("describe ".length);
      const root = (await reflection.getDescriptorBySymbol(symbol)).getProtobufJsRoot();
      if (!root.lookup(symbol)) throw new Error(`${ex.line}: ${symbol} not described`);
      results.described.push(symbol);
      continue;
    }
    const [service, method] = ex.target.split("/") as [string, string];
    const pkg = (await reflection.getDescriptorBySymbol(service)).getPackageObject({ keepCase: true, longs: String, enums: String, defaults: true });
    let node: unknown = pkg;
    for (const part of service.split(".")) node = (node as Record<string, unknown>)[part];
    const client = new (node as grpc.ServiceClientConstructor)(address, credentials, channelOptions);
    const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!.bind(client);
    const callMd = ex.auth ? md : new grpc.Metadata();
    try {
      if (method.startsWith("Watch")) {
        // A watch stays open: what it sent in its first half second is its answer.
        const stream = fn(ex.body ?? {}, callMd) as grpc.ClientReadableStream<unknown>;
        const events: unknown[] = [];
        stream.on("data", (e: unknown) => events.push(e));
        const failed = new Promise<unknown>((resolve) => stream.on("error", resolve));
        const outcome = await Promise.race([failed, new Promise((r) => setTimeout(() => r("open"), 500))]);
        stream.cancel();
        if (outcome !== "open") throw new Error(`${ex.line}: ${String(outcome)}`);
        results.streamed.push(method);
        results.responses.set(method, { events });
      } else {
        const res = await new Promise((resolve, reject) =>
          fn(ex.body ?? {}, callMd, (e: Error | null, r: unknown) => (e ? reject(new Error(`${ex.line}: ${e.message}`)) : resolve(r))),
        );
        results.responses.set(method, res);
      }
    } finally {
      client.close();
    }
  }
  return results;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const address = process.argv[2] ?? "127.0.0.1:8774";
  const token = process.env.NOVAMESH_ADMIN_TOKEN ?? process.env.TOKEN ?? "";
  const examples = await readmeExamples();
  const r = await runExamples(examples, address, token);
  console.log(`${examples.length} README examples ran against ${address}`);
  console.log(`  list: ${r.services.length} services; described: ${r.described.join(", ")}; streamed: ${r.streamed.join(", ")}`);
  for (const [method, res] of r.responses) console.log(`  ${method}: ${JSON.stringify(res).slice(0, 160)}`);
  process.exit(0);
}
