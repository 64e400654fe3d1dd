#!/usr/bin/env node
// The `novamesh` command: runs cli/main.ts through tsx (the project runs its TypeScript as it is).
import { register } from "tsx/esm/api";

// grpc-js names the TLS server by the address even when it is an IP address, which Node warns about
// (DEP0123) on every call to 127.0.0.1; other warnings are printed as Node would.
process.removeAllListeners("warning");
process.on("warning", (w) => {
  if (w.code !== "DEP0123") process.stderr.write(`${w.name}: ${w.message}\n`);
});
register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
// gRPC channels may keep the event loop alive: the command is done.
process.exit(process.exitCode);
