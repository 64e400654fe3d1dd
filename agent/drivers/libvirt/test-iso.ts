/** Reading an ISO image back with xorriso, for the config drive's tests. */
import { execFileSync } from "node:child_process";

/** The volume label and the files of an ISO image (absolute paths, sorted), as xorriso lists them. */
export function isoFiles(iso: string): { label: string; files: string[] } {
  const run = (args: string[]) => execFileSync("xorriso", ["-indev", iso, ...args], { stdio: ["ignore", "pipe", "ignore"] }).toString();
  const label = /Volume Id\s*:\s*(\S+)/.exec(run(["-pvd_info"]))?.[1] ?? "";
  const files = run(["-find", "/", "-type", "f"]).trim().split("\n").map((l) => l.replace(/^'|'$/g, "")).sort();
  return { label, files };
}
