/**
 * Running the host's programs (ip, bridge, nft, dnsmasq): execFile
 * without a shell, with a timeout, optionally inside a named network
 * namespace (`ip netns exec <ns> …`). A failure is a DriverError whose
 * message carries the command and its stderr.
 */
import { execFile } from "node:child_process";
import { DriverError } from "../../drivers/errors.js";

/** Default time a command may take, milliseconds. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 15_000;

/** One command. */
export interface Command {
  readonly file: string;
  readonly args: readonly string[];
  /** Written to the command's stdin (an nft script). */
  readonly input?: string;
  /**
   * Network namespace to run it in; `null`: the agent's own, whatever the
   * runner's default is (for `ip netns add`/`del`, which name global things).
   */
  readonly netns?: string | null;
}

/** A failed command: its exit code and stderr. */
export class CommandError extends DriverError {
  /** Exit code, or null if it was killed (timeout). */
  readonly exitCode: number | null;
  /** What it wrote to stderr, trimmed. */
  readonly stderr: string;

  constructor(command: string, exitCode: number | null, stderr: string, cause: unknown) {
    const why = exitCode === null ? "was killed (timeout?)" : `exited with ${exitCode}`;
    super("NETWORK_COMMAND_FAILED", `${command} ${why}${stderr ? `: ${stderr}` : ""}`, { retryable: true, cause });
    this.name = "CommandError";
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** Runs commands, in the driver's network namespace unless told otherwise. */
export class Runner {
  /**
   * @param netns the namespace every command runs in by default ("" or undefined: the agent's own)
   * @param timeoutMs how long one command may take
   */
  constructor(
    readonly netns: string | undefined,
    private readonly timeoutMs: number = DEFAULT_COMMAND_TIMEOUT_MS,
  ) {}

  /** Runs a command and resolves its stdout; rejects with a {@link CommandError}. */
  run(command: Command): Promise<string> {
    const ns = command.netns === undefined ? this.netns : command.netns;
    const [file, args] = ns ? ["ip", ["netns", "exec", ns, command.file, ...command.args]] : [command.file, [...command.args]];
    const shown = [file, ...args].join(" ");
    return new Promise((resolve, reject) => {
      // Writing stdin fails (EPIPE) when the command exits without reading it; its exit status says why.
      let inputError: Error | undefined;
      const child = execFile(file, args, { timeout: this.timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: "utf8" }, (err, stdout, stderr) => {
        if (!err && inputError) {
          reject(new CommandError(shown, 0, `its input could not be written: ${inputError.message}`, inputError));
          return;
        }
        if (!err) {
          resolve(stdout);
          return;
        }
        const code = typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : null;
        reject(new CommandError(shown.length > 300 ? `${shown.slice(0, 300)}…` : shown, code, String(stderr).trim() || err.message, err));
      });
      if (command.input !== undefined) {
        child.stdin?.on("error", (err) => (inputError = err));
        child.stdin?.end(command.input);
      }
    });
  }

  /** `ip …` in the driver's namespace. */
  ip(...args: string[]): Promise<string> {
    return this.run({ file: "ip", args });
  }

  /** `ip -j …` parsed. */
  async ipJson<T>(...args: string[]): Promise<T[]> {
    const out = await this.run({ file: "ip", args: ["-j", ...args] });
    return out.trim() === "" ? [] : (JSON.parse(out) as T[]);
  }

  /** `bridge …` in the driver's namespace. */
  bridge(...args: string[]): Promise<string> {
    return this.run({ file: "bridge", args });
  }

  /** `nft -f -` with `script` on stdin, in the driver's namespace. */
  nft(script: string): Promise<string> {
    return this.run({ file: "nft", args: ["-f", "-"], input: script });
  }

  /** `nft -j <args>` parsed. */
  async nftJson(...args: string[]): Promise<{ nftables: Record<string, unknown>[] }> {
    const out = await this.run({ file: "nft", args: ["-j", ...args] });
    return JSON.parse(out) as { nftables: Record<string, unknown>[] };
  }
}

/** Whether a failed `ip` command said the thing was not there. */
export function isNotFound(err: unknown): boolean {
  return err instanceof CommandError && /does not exist|Cannot find device|No such file or directory|not found/i.test(err.stderr);
}
