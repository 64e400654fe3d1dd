/**
 * The lifecycle table as the product specifies it: the vm_states each
 * action is allowed from. Written out here, not taken from the code, so the
 * tests can hold the code's table (ALLOWED_FROM) and its behaviour to it.
 */
import type { ServerAction, VmState } from "../controller/domain/states.js";

/** Every vm_state but DELETED. */
export const LIVE: readonly VmState[] = ["BUILDING", "ACTIVE", "STOPPED", "PAUSED", "SUSPENDED", "RESIZED", "SHELVED_OFFLOADED", "ERROR"];
/** Allowed-from vm_states per action; start, stop, confirm and revert as in Nova and docs/architecture.md. */
export const SPEC: Readonly<Record<ServerAction, readonly VmState[]>> = {
  pause: ["ACTIVE"],
  unpause: ["PAUSED"],
  suspend: ["ACTIVE"],
  resume: ["SUSPENDED"],
  reboot_hard: ["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED", "ERROR"],
  reboot_soft: ["ACTIVE"],
  resize: ["ACTIVE", "STOPPED"],
  migrate: ["ACTIVE", "STOPPED"],
  live_migrate: ["ACTIVE", "PAUSED"],
  // Any but BUILDING, and not SHELVED_OFFLOADED: it has no host to evacuate from.
  evacuate: ["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED", "RESIZED", "ERROR"],
  rebuild: ["ACTIVE", "STOPPED", "ERROR"],
  create_image: ["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED"],
  shelve: ["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED"],
  unshelve: ["SHELVED_OFFLOADED"],
  lock: LIVE,
  unlock: LIVE,
  delete: LIVE,
  start: ["STOPPED"],
  stop: ["ACTIVE", "ERROR"],
  confirm_resize: ["RESIZED"],
  revert_resize: ["RESIZED"],
  attach_interface: ["ACTIVE", "PAUSED", "STOPPED"],
  detach_interface: ["ACTIVE", "PAUSED", "STOPPED"],
  attach_volume: ["ACTIVE", "PAUSED", "STOPPED"],
  detach_volume: ["ACTIVE", "PAUSED", "STOPPED"],
  // Grown online: the hypervisor takes the new size by reconnecting, which a paused guest's disk does not do.
  extend_volume: ["ACTIVE", "STOPPED"],
};
