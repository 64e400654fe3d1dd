/**
 * Makes the keys, JWTs and configuration of a nats-server that refuses
 * anonymous connections (NATS operator mode, accounts preloaded in memory):
 *
 *   tsx scripts/nats-secure.ts DIR [--port 4223] [--tls-cert F --tls-key F]
 *
 * DIR gets (kept across runs; made only when missing):
 *   keys/operator.nk, keys/system.nk, keys/account.nk   seeds, mode 0600
 *   account-signing.nk   the application account's signing key: the
 *                        controller mints each agent's user with it (0600)
 *   controller.creds     the controller's own user (all of the account) (0600)
 *   nats.conf            the server's configuration (port, JetStream in
 *                        DIR/jetstream, the operator and both accounts)
 *
 * Run the server with `nats-server -c DIR/nats.conf`; start the controller
 * with `--nats nats://127.0.0.1:PORT --nats-creds DIR/controller.creds
 * --nats-signing-key DIR/account-signing.nk`. Agents need nothing: the
 * controller gives each one a user of its own in HelloAck.
 */
import { existsSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { nkeys } from "nats";
import { accountJwt, credsFile, operatorJwt, readSeed, seedOf, userJwt } from "../controller/bus/nats-auth.js";

type KeyPair = ReturnType<typeof nkeys.fromSeed>;

export interface SecureNats {
  readonly dir: string;
  readonly config: string;
  readonly controllerCreds: string;
  readonly signingKey: string;
  readonly account: string;
  readonly port: number;
}

async function keyFile(path: string, make: () => KeyPair): Promise<KeyPair> {
  if (existsSync(path)) return readSeed(path);
  const kp = make();
  await writeFile(path, `${seedOf(kp)}\n`, { mode: 0o600 });
  return kp;
}

async function secret(path: string, content: string): Promise<void> {
  await writeFile(path, content, { mode: 0o600 });
  await chmod(path, 0o600);
}

export async function secureNats(dirArg: string, o: { port: number; tlsCert?: string; tlsKey?: string }): Promise<SecureNats> {
  const dir = resolve(dirArg);
  await mkdir(join(dir, "keys"), { recursive: true, mode: 0o700 });
  const operator = await keyFile(join(dir, "keys/operator.nk"), () => nkeys.createOperator());
  const system = await keyFile(join(dir, "keys/system.nk"), () => nkeys.createAccount());
  const account = await keyFile(join(dir, "keys/account.nk"), () => nkeys.createAccount());
  const signing = await keyFile(join(dir, "account-signing.nk"), () => nkeys.createAccount());
  const controllerUser = await keyFile(join(dir, "keys/controller-user.nk"), () => nkeys.createUser());

  const opJwt = operatorJwt(operator, "novamesh", system.getPublicKey());
  const sysJwt = accountJwt(operator, system, "SYS", { jetstream: false });
  const appJwt = accountJwt(operator, account, "NOVAMESH", { jetstream: true, signingKeys: [signing.getPublicKey()] });
  const controllerJwt = userJwt(signing, account.getPublicKey(), controllerUser.getPublicKey(), "controller", {
    pub: { allow: [">"] },
    sub: { allow: [">"] },
  });
  await writeFile(join(dir, "operator.jwt"), `${opJwt}\n`);
  await secret(join(dir, "controller.creds"), credsFile(controllerJwt, seedOf(controllerUser)));
  const tls =
    o.tlsCert && o.tlsKey
      ? `tls: {\n  cert_file: ${JSON.stringify(resolve(o.tlsCert))}\n  key_file: ${JSON.stringify(resolve(o.tlsKey))}\n}\n`
      : "";
  const conf = `# Made by scripts/nats-secure.ts: anonymous connections are refused;
# every user is a JWT signed for the NOVAMESH account.
listen: 127.0.0.1:${o.port}
server_name: novamesh_${o.port}
operator: ${JSON.stringify(join(dir, "operator.jwt"))}
system_account: ${system.getPublicKey()}
resolver: MEMORY
resolver_preload: {
  ${system.getPublicKey()}: ${JSON.stringify(sysJwt)}
  ${account.getPublicKey()}: ${JSON.stringify(appJwt)}
}
jetstream: {
  store_dir: ${JSON.stringify(join(dir, "jetstream"))}
}
${tls}`;
  await writeFile(join(dir, "nats.conf"), conf);
  return {
    dir,
    config: join(dir, "nats.conf"),
    controllerCreds: join(dir, "controller.creds"),
    signingKey: join(dir, "account-signing.nk"),
    account: account.getPublicKey(),
    port: o.port,
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { port: { type: "string", default: "4223" }, "tls-cert": { type: "string" }, "tls-key": { type: "string" } },
  });
  const dir = positionals[0];
  if (!dir) throw new Error("usage: tsx scripts/nats-secure.ts DIR [--port 4223] [--tls-cert F --tls-key F]");
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error("--port must be a TCP port");
  const s = await secureNats(dir, { port, tlsCert: values["tls-cert"], tlsKey: values["tls-key"] });
  console.log(`nats-secure: ${s.config} (port ${port}); controller: --nats-creds ${s.controllerCreds} --nats-signing-key ${s.signingKey}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    console.error(`nats-secure: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
