/**
 * The network side of an op, around its driver calls (Nova's plug_vifs and
 * unplug_vifs): ops that create or restore an instance on this host plug
 * its ports first and hand the hypervisor driver the VIFs to attach; after
 * any op that may have removed the instance from this host, its ports are
 * unplugged here once the hypervisor no longer has it (a resize to the same
 * host keeps them: the instance is still here).
 */
import { OP_TRAITS } from "../../controller/domain/ops.js";
import type { CallOptions, Driver } from "../drivers/driver.js";
import { DriverError, InstanceNotFoundError } from "../drivers/errors.js";
import type { NetworkDriver } from "../network/driver.js";
import type { AgentOp } from "./agent-op.js";

/**
 * Plugs the op's ports when its kind creates or restores the instance here;
 * returns the op with the VIFs the hypervisor driver attaches.
 */
export async function plugPorts<O extends AgentOp>(op: O, network: NetworkDriver | undefined): Promise<O> {
  if (op.kind === "abort" || !OP_TRAITS[op.kind].plugsPorts) return op;
  const ports = op.instance.ports ?? [];
  if (ports.length === 0) return op;
  if (!network) throw new DriverError("NO_NETWORK_DRIVER", "the instance has ports but this agent has no network driver", { retryable: true });
  const vifs = await network.plug(op.instance.id, ports);
  return { ...op, instance: { ...op.instance, vifs } };
}

/** After an op that may have removed the instance from this host: its ports go if it is gone. */
export async function unplugIfGone(op: AgentOp, driver: Driver, network: NetworkDriver | undefined, call: CallOptions): Promise<boolean> {
  if (!network || op.kind === "abort" || !OP_TRAITS[op.kind].mayRemove) return false;
  try {
    await driver.powerState({ instanceId: op.instance.id }, { opId: call.opId });
    return false;
  } catch (err) {
    if (!(err instanceof InstanceNotFoundError)) throw err;
  }
  await network.unplug(op.instance.id);
  return true;
}
