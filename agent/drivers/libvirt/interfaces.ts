/**
 * Network interface hot-plug (Nova's `attach_interface` /
 * `detach_interface`): an `<interface>` added to or removed from a domain,
 * live when it runs and always in its persistent definition, so the change
 * survives a stop and start.
 *
 * Both calls find out first what the domain has (its live XML and its
 * inactive, persistent XML) and only change what still differs, so a call
 * repeated after a failure half way finishes the job. A live detach asks the
 * guest to release the device (ACPI eject); libvirt returns before it has,
 * so the driver polls the live XML until the interface is gone.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { CallOptions, InstanceOptions, InterfaceOptions } from "../driver.js";
import { DriverError, throwIfAborted } from "../errors.js";
import * as C from "./binding/constants.js";
import { buildInterfaceXml, parseInterfaces, type ParsedInterface } from "./domain-xml.js";
import { invalidState } from "./failures.js";
import { ACTIVE_STATES, type Known } from "./inventory.js";
import type { DriverParts } from "./parts.js";

/** Seconds a live detach waits for the guest to release the interface, by default. */
export const DEFAULT_DETACH_TIMEOUT_SECONDS = 20;

/** Milliseconds between reads of the live XML while a detach is pending. */
const DETACH_POLL_MS = 250;

/** The interfaces of a domain: live (while it runs) and in its persistent definition. */
interface Present {
  readonly active: boolean;
  readonly live: ParsedInterface | undefined;
  readonly config: ParsedInterface | undefined;
}

/** Adds and removes interfaces of novamesh's domains (see the module comment). */
export class Interfaces {
  constructor(private readonly p: DriverParts) {}

  async attach({ instanceId, vif }: InterfaceOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.usable(instanceId, "attach an interface to");
    let xml: string;
    try {
      xml = buildInterfaceXml({ mac: vif.mac, bridge: vif.bridge, tap: vif.tap, mtu: vif.mtu });
    } catch (err) {
      // A MAC, name or MTU libvirt would misread: the port is wrong, not the host.
      throw DriverError.from(err, "INVALID_INTERFACE");
    }
    const has = await this.present(k, vif.mac);
    const flags = (has.config ? 0 : C.VIR_DOMAIN_AFFECT_CONFIG) | (has.active && !has.live ? C.VIR_DOMAIN_AFFECT_LIVE : 0);
    if (flags === 0) return;
    throwIfAborted(call.signal);
    await this.p.libvirt.call(`attaching interface ${vif.mac} to ${instanceId}`, () => k.dom.attachDeviceFlags(xml, flags));
  }

  async detach({ instanceId, mac }: InstanceOptions & { readonly mac: string }, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.usable(instanceId, "detach an interface from");
    const has = await this.present(k, mac);
    const flags = (has.config ? C.VIR_DOMAIN_AFFECT_CONFIG : 0) | (has.live ? C.VIR_DOMAIN_AFFECT_LIVE : 0);
    if (flags === 0) return;
    const device = (has.live ?? has.config)!.xml;
    const seconds = this.p.options.detachTimeoutSeconds ?? DEFAULT_DETACH_TIMEOUT_SECONDS;
    const deadline = Date.now() + seconds * 1000;
    await this.p.libvirt.call(`detaching interface ${mac} from ${instanceId}`, () => k.dom.detachDeviceFlags(device, flags));
    if (has.live) await this.waitGone(k, mac, seconds, deadline, call.signal);
  }

  /** The domain of `instanceId`, refusing the states an interface cannot be changed in. */
  private async usable(instanceId: string, what: string): Promise<Known> {
    const k = await this.p.inventory.get(instanceId);
    await this.p.domains.refuseOldCopy(instanceId, what);
    // A suspended domain's saved memory holds its devices as they were; a
    // definition changed under it no longer matches what it restores.
    if (k.managedSave) throw invalidState(`cannot ${what} ${instanceId}: it is SUSPENDED (resume it first)`);
    return k;
  }

  /** The interface with `mac` in the live and the persistent XML of `k`. */
  private async present(k: Known, mac: string): Promise<Present> {
    const want = mac.toLowerCase();
    const find = (xml: string) => parseInterfaces(xml).find((i) => i.mac === want);
    const config = find(await this.p.libvirt.call(`reading the definition of ${k.serverId}`, () => k.dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE)));
    const active = ACTIVE_STATES.has(k.state);
    const live = active ? find(await this.p.libvirt.call(`reading the live XML of ${k.serverId}`, () => k.dom.getXMLDesc(0))) : undefined;
    return { active, live, config };
  }

  /**
   * Polls the live XML until the interface `mac` is gone (or the domain
   * stopped); DETACH_TIMEOUT (of `seconds`) at `deadline`. qemu's libvirt
   * itself waits about 5 s for the guest before it returns, so a detach
   * never gives up sooner than that.
   */
  private async waitGone(k: Known, mac: string, seconds: number, deadline: number, signal?: AbortSignal): Promise<void> {
    const want = mac.toLowerCase();
    for (;;) {
      throwIfAborted(signal);
      const { state } = await this.p.libvirt.call(`state of ${k.serverId}`, () => k.dom.getState());
      if (!ACTIVE_STATES.has(state)) return; // stopped meanwhile: the definition no longer has it
      const xml = await this.p.libvirt.call(`reading the live XML of ${k.serverId}`, () => k.dom.getXMLDesc(0));
      if (!parseInterfaces(xml).some((i) => i.mac === want)) return;
      if (Date.now() >= deadline) {
        throw new DriverError(
          "DETACH_TIMEOUT",
          `the guest of ${k.serverId} did not release interface ${mac} within ${seconds} s (the definition no longer has it; the guest may still release it)`,
          { retryable: true },
        );
      }
      await sleep(Math.min(DETACH_POLL_MS, Math.max(0, deadline - Date.now())));
    }
  }
}
