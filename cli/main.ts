/**
 * `novamesh`: the command line of the API. `novamesh --help` lists the
 * commands; every one takes the connection options (`--url`, `--token`,
 * `--ca`, `--plaintext`, `--tls-server-name`, `--os-cloud`, or NOVAMESH_URL,
 * NOVAMESH_TOKEN, NOVAMESH_CA, NOVAMESH_CLOUD) and the output options
 * (`-f table|json|yaml|value`, `-c COLUMN`).
 *
 * Exit codes: 0 done; 1 the call failed, or what was waited for ended in
 * ERROR or failed; 2 a usage mistake; 3 not found; 130 interrupted while
 * waiting (the operation goes on).
 */
import { Command, CommanderError, Option } from "commander";
import * as grpc from "@grpc/grpc-js";
import { addAdmin } from "./admin.js";
import { addCompletion } from "./completion.js";
import { addCompute } from "./compute.js";
import { CallError } from "./connection.js";
import { addImages } from "./images.js";
import { addNetworks } from "./networks.js";
import { FORMATS, UsageError } from "./output.js";
import { addServers } from "./servers.js";
import { addVolumes } from "./volumes.js";

export function program(): Command {
  const root = new Command("novamesh")
    .description("the novamesh API from the command line")
    .option("--url <address>", "the controller, host:port (NOVAMESH_URL; default 127.0.0.1:8774)")
    .option("--token <secret>", "the bearer token (NOVAMESH_TOKEN)")
    .option("--ca <file>", "the CA that signs the controller's certificate (NOVAMESH_CA; default the system's)")
    .option("--tls-server-name <name>", "the name the controller's certificate must carry, when --url is an address it does not")
    .option("--plaintext", "no TLS (a controller started with --plaintext)")
    .option("--os-cloud <name>", "take the settings of this cloud in the clouds file (NOVAMESH_CLOUD; see novamesh completion --help)")
    .addOption(new Option("-f, --format <format>", "output format").choices([...FORMATS]).default("table"))
    .option("-c, --column <name>", "a column to show (repeat for more; default all)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .exitOverride()
    .showHelpAfterError();
  addServers(root);
  addCompute(root);
  addImages(root);
  addNetworks(root);
  addVolumes(root);
  addAdmin(root);
  addCompletion(root);
  return root;
}

/** Runs the command line; resolves the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync([...argv], { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UsageError) {
      process.stderr.write(`novamesh: ${err.message}\n`);
      return 2;
    }
    if (err instanceof CallError) {
      for (const line of err.describe()) process.stderr.write(`novamesh: ${line}\n`);
      if (err.code === grpc.status.NOT_FOUND) return 3;
      return 1;
    }
    const code = (err as { exitCode?: number }).exitCode;
    process.stderr.write(`novamesh: ${(err as Error).message}\n`);
    return typeof code === "number" ? code : 1;
  }
}
