import type { Fault } from "../domain/types.js";
import type { Placement } from "./pipeline.js";

/** A NoValidHost fault that says how many hosts each filter removed. */
export function noValidHostFault(p: Placement, lostClaims: number): Fault {
  const parts = Object.entries(p.rejections)
    .sort((a, b) => b[1] - a[1])
    .map(([f, n]) => `${f}: ${n}`);
  if (lostClaims) parts.push(`claim_conflict: ${lostClaims}`);
  const details: Record<string, string> = { hosts_considered: String(p.considered) };
  for (const [f, n] of Object.entries(p.rejections)) details[`filter.${f}`] = String(n);
  if (lostClaims) details["claim_conflict"] = String(lostClaims);
  const why = p.considered === 0 ? "no compute hosts are registered" : `${p.considered} hosts considered; removed by ${parts.join(", ")}`;
  return { code: "NO_VALID_HOST", message: `No valid host was found: ${why}`, details, createdAt: new Date().toISOString() };
}
