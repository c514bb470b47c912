/**
 * Site config of test/ipam-quotas.test.ts: a small address range per project (access lists), and a
 * quota of 12 VMs / 24 vCPUs for project `capped` (100 VMs for the others). `capped` has more
 * addresses than its quota allows VMs, `wide` fewer addresses than it asks for, so each project runs
 * into exactly one of the two limits.
 */
import { type IpRange, ipManager } from "../../../shared/plugins/builtin/ipam.ts";
import { quotas } from "../../../shared/plugins/builtin/quotas.ts";
import { defineConfig } from "../../../shared/plugins/config.ts";

export const RANGES = {
  /** 16 addresses. */
  capped: {
    name: "capped-net",
    cidr: "10.77.1.0/24",
    first: "10.77.1.10",
    last: "10.77.1.25",
    gateway: "10.77.1.1",
    vlan: 71,
    projects: ["capped"],
  },
  /** 10 addresses. */
  wide: {
    name: "wide-net",
    cidr: "10.77.2.0/24",
    first: "10.77.2.10",
    last: "10.77.2.19",
    gateway: "10.77.2.1",
    vlan: 72,
    projects: ["wide"],
  },
} as const satisfies Record<string, IpRange>;

export const CAPPED = { vms: 12, vcpus: 24 } as const;

export default defineConfig({
  plugins: [
    ipManager({ ranges: [RANGES.capped, RANGES.wide] }),
    quotas({ default: { vms: 100 }, projects: { capped: CAPPED } }),
  ],
});
