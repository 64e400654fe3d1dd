/**
 * Issues a host's agent token: a token that may speak only for that host on
 * the agent stream. An earlier token of the host is deleted first, so the
 * host ends with exactly one (the new one) and the old secret stops working.
 *
 *   tsx scripts/agent-token.ts [ADDRESS] --host HOST [--out FILE] [--project ID] [--tls-ca FILE | --plaintext]
 *
 * ADDRESS is the controller's gRPC address (default: NOVAMESH_CONTROLLER,
 * else 127.0.0.1:8774); the admin token comes from NOVAMESH_ADMIN_TOKEN. The
 * secret is written to FILE (mode 0600) or, without --out, printed. The
 * controller is reached over TLS, verified with the CA in --tls-ca (default:
 * the system's CAs); --plaintext (or NOVAMESH_PLAINTEXT=1) for a controller
 * run with --plaintext.
 */
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { IdentityServiceClient, Role } from "../gen/novamesh/compute/v1/identity.js";
import { clientCredentials, type ClientTls } from "../agent/tls.js";
import type { CreateTokenRequest, Token } from "../gen/novamesh/compute/v1/identity.js";

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;

function call<Req, Res>(fn: (req: Req, md: grpc.Metadata, cb: Callback<Res>) => unknown, req: Req, md: grpc.Metadata): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, md, (err, res) => (err ? reject(err) : resolve(res))));
}

export async function issueAgentToken(address: string, adminToken: string, host: string, projectId = "infra", tls: ClientTls = {}): Promise<string> {
  const channel = clientCredentials(tls);
  const client = new IdentityServiceClient(address, channel.credentials, channel.channelOptions);
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${adminToken}`);
  try {
    const { tokens } = await call<{ projectId: string }, { tokens: Token[] }>(client.listTokens.bind(client), { projectId: "" }, md);
    for (const t of tokens.filter((t) => t.role === Role.ROLE_AGENT && t.host === host)) {
      await call(client.deleteToken.bind(client), { id: t.id }, md);
    }
    const created = await call<CreateTokenRequest, { secret: string }>(
      client.createToken.bind(client),
      { projectId, role: Role.ROLE_AGENT, host, description: `agent of ${host}`, expiration: undefined },
      md,
    );
    return created.secret;
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      host: { type: "string" },
      out: { type: "string" },
      project: { type: "string", default: "infra" },
      "tls-ca": { type: "string" },
      plaintext: { type: "boolean", default: ["1", "true", "yes"].includes(process.env.NOVAMESH_PLAINTEXT ?? "") },
    },
  });
  const address = positionals[0] ?? process.env.NOVAMESH_CONTROLLER ?? "127.0.0.1:8774";
  const admin = process.env.NOVAMESH_ADMIN_TOKEN;
  if (!values.host) throw new Error("--host is required: the host the token may speak for");
  if (!admin) throw new Error("NOVAMESH_ADMIN_TOKEN must hold an admin token");
  const tls: ClientTls = values.plaintext ? { plaintext: true, ca: values["tls-ca"] } : { ca: values["tls-ca"] };
  const secret = await issueAgentToken(address, admin, values.host, values.project, tls);
  if (values.out) {
    await writeFile(values.out, secret, { mode: 0o600 });
    console.log(`agent-token: issued the agent token of ${values.host} into ${values.out}`);
  } else {
    console.log(secret);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    const e = err as grpc.ServiceError;
    console.error(`agent-token: ${e.details ?? e.message ?? String(err)}`);
    process.exit(1);
  });
}
