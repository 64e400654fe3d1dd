/**
 * libvirt's domain states in Nova's power states (Nova's
 * `LIBVIRT_POWER_STATE`), with the two cases libvirt's state alone does not
 * tell: a shut-off domain with a managed-save image is SUSPENDED (Nova's
 * suspend), and one libvirt shut off because it crashed is CRASHED.
 */
import * as C from "./binding/constants.js";
import type { PowerState } from "../types.js";

/** The power state of a domain in libvirt state `state` with `reason`. */
export function powerStateOf(state: number, reason: number, hasManagedSave: boolean): PowerState {
  switch (state) {
    case C.VIR_DOMAIN_RUNNING:
    case C.VIR_DOMAIN_BLOCKED:
      return "RUNNING";
    case C.VIR_DOMAIN_PAUSED:
      return "PAUSED";
    case C.VIR_DOMAIN_SHUTDOWN: // shutting down: still running until it is off
      return "RUNNING";
    case C.VIR_DOMAIN_SHUTOFF:
      if (hasManagedSave) return "SUSPENDED";
      if (reason === C.VIR_DOMAIN_SHUTOFF_CRASHED) return "CRASHED";
      return "SHUTDOWN";
    case C.VIR_DOMAIN_CRASHED:
      return "CRASHED";
    case C.VIR_DOMAIN_PMSUSPENDED:
      return "SUSPENDED";
    default:
      return "NOSTATE";
  }
}

/** Names of libvirt's states, for messages. */
export function libvirtStateName(state: number): string {
  return (
    ["nostate", "running", "blocked", "paused", "shutting down", "shut off", "crashed", "pmsuspended"][state] ?? `state ${state}`
  );
}
