/**
 * How the CLI prints: a table for people (cli-table3), or JSON, YAML or
 * bare values for scripts (`-f`), limited to the columns asked for (`-c`).
 */
import { readFileSync } from "node:fs";
import Table from "cli-table3";
import { stringify } from "yaml";

export type Format = "table" | "json" | "yaml" | "value";
export const FORMATS: readonly Format[] = ["table", "json", "yaml", "value"];

/** A printed value: what a view holds (see view.ts). */
export type Cell = string | number | boolean | null | readonly Cell[] | { readonly [k: string]: Cell };
/** One printed record: column → value. */
export type Row = Record<string, Cell>;

export interface OutputOptions {
  readonly format: Format;
  /** Columns to keep, in this order; empty: all. */
  readonly columns: readonly string[];
}

function pick(row: Row, columns: readonly string[]): Row {
  if (columns.length === 0) return row;
  const out: Row = {};
  for (const c of columns) {
    if (!(c in row)) throw new UsageError(`no column "${c}" (columns: ${Object.keys(row).join(", ")})`);
    out[c] = row[c]!;
  }
  return out;
}

/** A value in a table cell or a `value` line: lists joined by ", ", objects as key=value pairs, nested ones compact. */
function text(v: Cell): string {
  if (v === null) return "";
  if (Array.isArray(v)) return v.map((x) => (typeof x === "object" && x !== null ? `{${text(x)}}` : text(x))).join(", ");
  if (typeof v === "object") {
    return Object.entries(v as Record<string, Cell>)
      .map(([k, x]) => `${k}=${typeof x === "object" && x !== null ? `{${text(x)}}` : text(x)}`)
      .join(", ");
  }
  return String(v);
}

/** Rows as a list: one table row each (`list` commands). */
export function printList(rows: readonly Row[], o: OutputOptions, columns: readonly string[]): string {
  const picked = rows.map((r) => pick(r, o.columns));
  const heads = o.columns.length ? [...o.columns] : [...columns];
  switch (o.format) {
    case "json":
      return `${JSON.stringify(picked, null, 2)}\n`;
    case "yaml":
      return stringify(picked);
    case "value":
      return picked.map((r) => heads.map((h) => text(r[h] ?? "")).join(" ")).join("\n") + (picked.length ? "\n" : "");
    case "table": {
      const t = new Table({ head: heads, style: { head: [], border: [] } });
      for (const r of picked) t.push(heads.map((h) => text(r[h] ?? "")));
      return `${t.toString()}\n`;
    }
  }
}

/** One record: a two-column table of fields and values (`show`, `create`). */
export function printOne(row: Row, o: OutputOptions): string {
  const picked = pick(row, o.columns);
  switch (o.format) {
    case "json":
      return `${JSON.stringify(picked, null, 2)}\n`;
    case "yaml":
      return stringify(picked);
    case "value":
      return `${Object.values(picked).map(text).join("\n")}\n`;
    case "table": {
      const t = new Table({ head: ["Field", "Value"], style: { head: [], border: [] } });
      for (const [k, v] of Object.entries(picked)) t.push([k, text(v)]);
      return `${t.toString()}\n`;
    }
  }
}

/** A mistake in how the command was called: exit code 2. */
export class UsageError extends Error {}

/** The content of the file an option names; one that cannot be read is a usage mistake naming the option. */
export function readFileArg(option: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`${option} ${path}: ${(err as Error).message}`);
  }
}
