import type { Queryable } from "./db.js";
import { exec, select } from "./db.js";

/**
 * The seed of a key every controller of the deployment shares: the first
 * controller to start stores `fresh`, every later one (and every
 * concurrent one) reads what is stored.
 */
export async function sharedKeySeed(q: Queryable, name: string, fresh: string): Promise<string> {
  await exec(q, "INSERT IGNORE INTO controller_keys (name, seed) VALUES (?, ?)", [name, fresh]);
  const rows = await select<{ seed: string }>(q, "SELECT seed FROM controller_keys WHERE name = ?", [name]);
  if (!rows[0]) throw new Error(`controller key ${name} vanished`);
  return rows[0].seed;
}
