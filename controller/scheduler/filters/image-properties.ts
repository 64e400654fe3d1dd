import type { HostFilter } from "../types.js";
import { PASS } from "../types.js";

/** Hypervisor types that run each other's images (Nova canonicalises "qemu" and "kvm"). */
const canonical = (t: string) => {
  const v = t.trim().toLowerCase();
  return v === "kvm" ? "qemu" : v;
};

/** Architecture spellings as one (Nova's arch.canonicalize). */
const ARCH_ALIASES: Readonly<Record<string, string>> = { amd64: "x86_64", x64: "x86_64", "x86-64": "x86_64", i386: "i686", i486: "i686", i586: "i686", x86: "i686", arm64: "aarch64", ppc64el: "ppc64le" };
const canonicalArch = (a: string) => {
  const v = a.trim().toLowerCase();
  return ARCH_ALIASES[v] ?? v;
};

/**
 * Passes hosts that can run the image (Nova's ImagePropertiesFilter): its
 * `architecture` (or `hw_architecture`) is the host's, its `hypervisor_type`
 * (or `img_hv_type`) the host's hypervisor. Properties the image does not set
 * pass; a host that does not report its architecture passes any.
 */
export const imagePropertiesFilter: HostFilter = {
  name: "image_properties",
  check(host, spec) {
    const p = spec.imageProperties ?? {};
    const arch = canonicalArch(p.architecture || p.hw_architecture || "");
    if (arch && host.architecture && arch !== canonicalArch(host.architecture)) {
      return { pass: false, reason: `image architecture ${arch}, host ${host.architecture}` };
    }
    const hv = p.hypervisor_type || p.img_hv_type || "";
    if (hv && canonical(hv) !== canonical(host.hypervisorType)) {
      return { pass: false, reason: `image hypervisor_type ${hv}, host ${host.hypervisorType}` };
    }
    return PASS;
  },
};
