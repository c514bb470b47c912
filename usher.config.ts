/**
 * This site's policy: the plugins that run, in order, with their options, and the scheduler's
 * policy choices. Typed: a plugin that does not exist, or options it does not take, fail `npm run
 * typecheck`. See docs/plugins.md for every event and how to write a plugin, docs/scheduler.md for
 * policies.
 *
 * The default is empty: no plugins, the `pack` policy everywhere. The local stack and the tests run
 * with it (tests that need plugins load their own file through USHER_CONFIG).
 */
import { defineConfig } from "./shared/plugins/config.ts";

/*
 * A fuller site, for reference. To use it, move these imports to the top and replace the config below.
 *
 * import { on } from "./shared/plugins/config.ts";
 * import { argumentPolicy } from "./shared/plugins/builtin/arguments.ts";
 * import { audit } from "./shared/plugins/builtin/audit.ts";
 * import { dns } from "./shared/plugins/builtin/dns.ts";
 * import { ipManager } from "./shared/plugins/builtin/ipam.ts";
 * import { leases } from "./shared/plugins/builtin/leases.ts";
 * import { quotas } from "./shared/plugins/builtin/quotas.ts";
 * import { webhook } from "./shared/plugins/builtin/webhook.ts";
 *
 * export default defineConfig({
 *   plugins: [
 *     // Request hooks run in this order: the argument policy fills defaults before the others look.
 *     argumentPolicy({
 *       rules: [
 *         {
 *           defaults: { image: "debian-12", hypervisor: "kvm" },
 *           limits: { vcpus: 8, memoryMiB: 32_768, devices: { "nvidia-a100": 0 } },
 *           allowed: { images: ["debian-12", "ubuntu-24.04"], hypervisors: ["kvm", "xen"], sites: ["local"] },
 *         },
 *         { scope: { projects: ["ml"] }, limits: { vcpus: 32, memoryMiB: 262_144, devices: { "nvidia-a100": 4 } } },
 *         { scope: { roles: ["admin"] }, limits: { vcpus: 64, memoryMiB: 524_288 } },
 *       ],
 *     }),
 *     ipManager({
 *       ranges: [
 *         { name: "ml-net", cidr: "10.20.0.0/24", gateway: "10.20.0.1", vlan: 20, projects: ["ml"] },
 *         { name: "shared", cidr: "10.10.0.0/16", first: "10.10.1.1", last: "10.10.255.254", gateway: "10.10.0.1" },
 *       ],
 *     }),
 *     // Records on the site's nameserver; its address and TSIG key are in the agent's config.
 *     dns(),
 *     quotas({ default: { vms: 20, vcpus: 64, memoryMiB: 131_072 }, projects: { ml: { vcpus: 256, memoryMiB: null } } }),
 *     audit({ reads: false }),
 *     leases({
 *       defaultSeconds: 7 * 86_400,
 *       maxSeconds: 30 * 86_400,
 *       warnBeforeSeconds: 86_400,
 *       onExpiry: "shutdown",
 *       projects: { ci: { defaultSeconds: 3_600, maxSeconds: 86_400, warnBeforeSeconds: 600, onExpiry: "destroy" } },
 *     }),
 *     on(
 *       ["host_down", "start_failure", "lease_expired"],
 *       webhook({
 *         url: "https://ops.example.org/usher",
 *         events: ["host_down", "start_failure", "lease_expired"],
 *         secret: "replace-with-a-long-random-secret",
 *       }),
 *       { timeoutMs: 3_000 },
 *     ),
 *   ],
 *   scheduler: { defaultPolicy: "pack", projects: { web: "spread", render: "load", archive: "power-saving" } },
 * });
 */

export default defineConfig({
  plugins: [],
});
