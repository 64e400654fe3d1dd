/**
 * Test support: a throwaway CA and certificates made with openssl, laid out
 * as qemu's `tls-creds-x509` wants them: a server directory (`ca-cert.pem`,
 * `server-cert.pem`, `server-key.pem`) for the volume host, and one client
 * directory (`ca-cert.pem`, `client-cert.pem`, `client-key.pem`) per
 * compute host, whose certificate's CN is the host's name.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";

const run = promisify(execFile);

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  await run("openssl", args, { cwd, timeout: 30_000 });
}

/** A CA in `dir` and a function that issues certificates from it. */
export interface TestPki {
  /** The server directory for the volume host (its certificate names 127.0.0.1 and localhost). */
  readonly serverDir: string;
  /** A client directory for compute host `name` (CN=name, O=novamesh), made once per name. */
  client(name: string): Promise<string>;
  /** A client directory whose certificate names `name` but is signed by another CA (its CA file holds both CAs, so it trusts the volume host). */
  stranger(name: string): Promise<string>;
  /** A client directory with a certificate of this CA for an arbitrary subject (openssl's -subj form). */
  crafted(label: string, subject: string): Promise<string>;
}

async function makeCa(dir: string, name: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await openssl(dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
    "-subj", `/CN=${name}`, "-keyout", "ca-key.pem", "-out", "ca-cert.pem");
}

/**
 * Issues a certificate from the CA in `caDir` (ca-cert.pem, ca-key.pem)
 * into `outDir` as `<kind>-cert.pem` and `<kind>-key.pem`, with a copy of
 * the CA's ca-cert.pem: a directory qemu's tls-creds-x509 reads. `san`
 * such as "IP:127.0.0.1,DNS:localhost".
 */
export async function issue(caDir: string, outDir: string, kind: "server" | "client", subject: string, san?: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const ext = [
    "basicConstraints=CA:FALSE",
    "keyUsage=digitalSignature,keyEncipherment",
    `extendedKeyUsage=${kind === "server" ? "serverAuth" : "clientAuth"}`,
    ...(san ? [`subjectAltName=${san}`] : []),
  ];
  await writeFile(join(outDir, "ext.cnf"), `${ext.join("\n")}\n`);
  await openssl(outDir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject,
    "-keyout", `${kind}-key.pem`, "-out", "req.csr");
  await openssl(outDir, "x509", "-req", "-in", "req.csr", "-CA", join(caDir, "ca-cert.pem"), "-CAkey", join(caDir, "ca-key.pem"),
    "-set_serial", `0x${randomBytes(8).toString("hex")}`, "-days", "2", "-extfile", "ext.cnf", "-out", `${kind}-cert.pem`);
  await copyFile(join(caDir, "ca-cert.pem"), join(outDir, "ca-cert.pem"));
}

/** Makes a CA under `dir` (a temporary directory the caller removes) with the volume host's server certificate. */
export async function makeTestPki(dir: string): Promise<TestPki> {
  const caDir = join(dir, "ca");
  await makeCa(caDir, "novamesh test CA");
  const serverDir = join(dir, "server");
  await issue(caDir, serverDir, "server", "/O=novamesh/CN=volume-host", "IP:127.0.0.1,DNS:localhost");
  const clients = new Map<string, Promise<string>>();
  return {
    serverDir,
    client(name) {
      let made = clients.get(name);
      if (!made) {
        const out = join(dir, "clients", name);
        made = issue(caDir, out, "client", `/O=novamesh/CN=${name}`).then(() => out);
        clients.set(name, made);
      }
      return made;
    },
    async crafted(label, subject) {
      const out = join(dir, "crafted", label);
      await issue(caDir, out, "client", subject);
      return out;
    },
    async stranger(name) {
      const otherCa = join(dir, "other-ca");
      await makeCa(otherCa, "someone else's CA");
      const out = join(dir, "strangers", name);
      await issue(otherCa, out, "client", `/O=novamesh/CN=${name}`);
      // qemu checks its own certificate against its CA file too: the bundle holds both CAs.
      const bundle = (await readFile(join(caDir, "ca-cert.pem"), "utf8")) + (await readFile(join(otherCa, "ca-cert.pem"), "utf8"));
      await writeFile(join(out, "ca-cert.pem"), bundle);
      return out;
    },
  };
}
