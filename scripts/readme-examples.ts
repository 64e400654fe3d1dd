/**
 * Runs the README's grpcurl examples with a generic reflection client (for
 * machines without grpcurl): every type comes from the server's reflection,
 * nothing from this repository's generated code.
 *
 *   NOVAMESH_ADMIN_TOKEN=... npx tsx scripts/readme-examples.ts [address]
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { GrpcReflection } from "grpc-js-reflection-client";

export interface Example {
  readonly line: string;
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
const LINE = /^grpcurl -plaintext (-H "authorization: Bearer \$TOKEN" )?(?:-d '([^']*)' )?127\.0\.0\.1:8774 (.+)$/;

/** The grpcurl commands of the README, parsed; an unparseable one throws. */
export async function readmeExamples(): Promise<Example[]> {
  const out: Example[] = [];
  for (const line of (await readFile(README, "utf8")).split("\n")) {
    if (!line.startsWith("grpcurl ")) continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`README example not understood: ${line}`);
    out.push({ line, auth: Boolean(m[1]), body: m[2] ? (JSON.parse(m[2]) as Record<string, unknown>) : null, target: m[3]! });
  }
  return out;
}

/** Runs every example against `address` with `token` standing for $TOKEN; a failing call throws. */
export async function runExamples(examples: readonly Example[], address: string, token: string): Promise<ExampleResults> {
  const reflection = new GrpcReflection(address, grpc.credentials.createInsecure(), {}, "v1");
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  const results: ExampleResults = { services: [], described: [], responses: new Map(), streamed: [] };
  for (const ex of examples) {
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
    const client = new (node as grpc.ServiceClientConstructor)(address, grpc.credentials.createInsecure());
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
