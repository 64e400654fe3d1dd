/**
 * Interfaces: hot-plug and removal of a server's network interfaces (Nova's
 * os-interface). The port is made (or taken) with the action, so a refusal
 * (no address left, address taken, port in use) is the call's own error;
 * the host then plugs it and attaches it to the guest. A host that cannot
 * gives the port back (made for it: deleted; given: free again). A detach
 * releases the port once the host has removed the interface.
 */
import type { Principal } from "../../domain/types.js";
import { failedPrecondition, notFound } from "../../errors.js";
import type { Accepted } from "../act.js";
import { act } from "../act.js";
import type { ConductorContext } from "../context.js";
import type { ActionRules, ResultRules, TimeoutRules } from "../flow.js";

/** Nova allows interface changes while the guest runs, is paused or is shut off. */
const FROM = ["ACTIVE", "PAUSED", "STOPPED"] as const;

export const actions = {
  attach_interface: { from: FROM, task: "INTERFACE_ATTACHING" },
  detach_interface: { from: FROM, task: "INTERFACE_DETACHING" },
} as const satisfies ActionRules<"attach_interface" | "detach_interface">;

/** What AttachInterface asks for, validated: a network (and address), or a port. */
export interface AttachRequest {
  readonly networkId?: string;
  readonly portId?: string;
  readonly fixedIp?: string;
}

export function attach(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, req: AttachRequest): Promise<Accepted> {
  const request = { network_id: req.networkId ?? "", port_id: req.portId ?? "", fixed_ip: req.fixedIp ?? "" };
  return act(ctx, who, uuid, requestId, "attach_interface", actions.attach_interface, request, async (tx, inst, actionId) => {
    if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
    if (req.networkId) await tx.store.checkQuota(inst.projectId, { ports: 1 }, { fields: { ports: "network_id" } });
    const port = await tx.store.attachNewInterface(inst, inst.host, req, actionId);
    const busy = await tx.update(inst.uuid, tx.task("INTERFACE_ATTACHING"));
    await tx.dispatch({ instance: busy, host: inst.host, actionId, requestId, args: { kind: "attach_interface", portId: port.id } });
    return { instance: busy };
  });
}

export function detach(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, portId: string): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "detach_interface", actions.detach_interface, { port_id: portId }, async (tx, inst, actionId) => {
    if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
    const port = await tx.store.getPort(portId);
    if (!port || port.deviceId !== inst.uuid) throw notFound("port", portId);
    await tx.store.setActionPort(actionId, portId);
    const busy = await tx.update(inst.uuid, tx.task("INTERFACE_DETACHING"));
    await tx.dispatch({ instance: busy, host: inst.host, actionId, requestId, args: { kind: "detach_interface", portId, macAddress: port.macAddress } });
    return { instance: busy };
  });
}

export const results = {
  attach_interface: {
    tasks: ["INTERFACE_ATTACHING"],
    apply: async (r) => {
      if (!r.error) return r.succeed({});
      // Not plugged: the port goes back (deleted if made for this, free if given).
      const portId = await r.store.actionPort(r.op.actionId);
      if (portId) await r.store.releasePort(portId, r.inst.uuid);
      return r.fail({});
    },
  },
  detach_interface: {
    tasks: ["INTERFACE_DETACHING"],
    apply: async (r) => {
      if (r.error) return r.fail({});
      const portId = await r.store.actionPort(r.op.actionId);
      if (portId) await r.store.releasePort(portId, r.inst.uuid);
      return r.succeed({});
    },
  },
} as const satisfies ResultRules<"attach_interface" | "detach_interface">;

export const timeouts = {
  INTERFACE_ATTACHING: { outcome: "the interface stays listed; detach it if the guest does not have it", reap: (t) => t.end() },
  INTERFACE_DETACHING: { outcome: "the interface stays listed; detach it again", reap: (t) => t.end() },
} as const satisfies TimeoutRules<"INTERFACE_ATTACHING" | "INTERFACE_DETACHING">;
