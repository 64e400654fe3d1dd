/**
 * `novamesh completion bash|zsh`: a completion script made from the
 * commands themselves — each command path with its subcommands and
 * options — so it never falls behind them. Load it with
 * `source <(novamesh completion bash)` (or zsh), or write it where the
 * shell looks for completions.
 */
import type { Command } from "commander";
import { UsageError } from "./output.js";

/** Every command path ("" for the root, "server create", …) with the words that may follow it. */
function table(root: Command): Map<string, string[]> {
  const paths = new Map<string, string[]>();
  const walk = (cmd: Command, path: string, inherited: string[]) => {
    const own = cmd.options.flatMap((o) => [o.short, o.long].filter((f): f is string => !!f));
    const options = [...inherited, ...own, "--help"];
    paths.set(path, [...cmd.commands.flatMap((c) => [c.name(), ...c.aliases()]), ...new Set(options)]);
    for (const sub of cmd.commands) for (const n of [sub.name(), ...sub.aliases()]) walk(sub, path ? `${path} ${n}` : n, path ? options.filter((o) => o !== "--help") : own);
  };
  walk(root, "", []);
  return paths;
}

/** The options that take a value, so the word after them is not a command. */
function valued(root: Command): string[] {
  const out = new Set<string>();
  const walk = (cmd: Command) => {
    for (const o of cmd.options) if (o.required || o.optional) for (const f of [o.short, o.long]) if (f) out.add(f);
    for (const sub of cmd.commands) walk(sub);
  };
  walk(root);
  return [...out].sort();
}

const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

/** The shell function both scripts share: sets __nm_words to what may follow command path $1; fails for no command path. */
function wordsFunction(root: Command): string {
  const cases = [...table(root)].map(([path, words]) => `    ${quote(path)}) __nm_words=${quote(words.join(" "))} ;;`).join("\n");
  return `__novamesh_words() {
  case "$1" in
${cases}
    *) return 1 ;;
  esac
}`;
}

/** Finds the command path in the words typed so far (options and their values skipped), then offers what may follow. */
function bash(root: Command): string {
  return `# novamesh completion for bash: source <(novamesh completion bash)
_novamesh() {
  local cur=\${COMP_WORDS[COMP_CWORD]} cmdpath="" skip="" w i __nm_words
  local valued=" ${valued(root).join(" ")} "
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    if [[ -n $skip ]]; then skip=""; continue; fi
    if [[ $w == -* ]]; then [[ $valued == *" $w "* ]] && skip=1; continue; fi
    if __novamesh_words "\${cmdpath:+$cmdpath }$w"; then cmdpath="\${cmdpath:+$cmdpath }$w"; fi
  done
  if [[ -n $skip ]]; then COMPREPLY=($(compgen -f -- "$cur")); return; fi
  __novamesh_words "$cmdpath"
  COMPREPLY=($(compgen -W "$__nm_words" -- "$cur"))
}
${wordsFunction(root)}
complete -o default -F _novamesh novamesh
`;
}

function zsh(root: Command): string {
  return `#compdef novamesh
# novamesh completion for zsh: source <(novamesh completion zsh), or save it as _novamesh in your $fpath
_novamesh() {
  local cmdpath="" skip="" w i __nm_words
  local valued=" ${valued(root).join(" ")} "
  for ((i = 2; i < CURRENT; i++)); do
    w=\${words[i]}
    if [[ -n $skip ]]; then skip=""; continue; fi
    if [[ $w == -* ]]; then [[ $valued == *" $w "* ]] && skip=1; continue; fi
    if __novamesh_words "\${cmdpath:+$cmdpath }$w"; then cmdpath="\${cmdpath:+$cmdpath }$w"; fi
  done
  if [[ -n $skip ]]; then _files; return; fi
  __novamesh_words "$cmdpath"
  compadd -- \${=__nm_words}
}
${wordsFunction(root)}
# Loaded from $fpath as _novamesh, the first Tab runs this file: complete now; sourced, register.
if [[ \${funcstack[1]:-} == _novamesh ]]; then _novamesh "$@"; else compdef _novamesh novamesh; fi
`;
}

export function addCompletion(root: Command): void {
  root
    .command("completion <shell>")
    .description("print a completion script for bash or zsh")
    .addHelpText(
      "after",
      `
Load it in the current shell:   source <(novamesh completion bash)
Or for every new one (bash):     novamesh completion bash > ~/.local/share/bash-completion/completions/novamesh

Named clouds: --os-cloud NAME (or NOVAMESH_CLOUD) takes url, token or token_file, ca, plaintext
and tls_server_name from clouds.NAME in $NOVAMESH_CLOUDS, else ~/.config/novamesh/clouds.yaml:

  clouds:
    lab:
      url: controller.lab:8774
      token_file: lab-token        # relative to the file
      ca: lab-ca.pem`,
    )
    .action((shell: string) => {
      if (shell !== "bash" && shell !== "zsh") throw new UsageError(`completion ${shell}: give bash or zsh`);
      process.stdout.write(shell === "bash" ? bash(root) : zsh(root));
    });
}
