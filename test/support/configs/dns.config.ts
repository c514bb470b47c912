/**
 * A site config for test/dns/stack.test.ts, loaded by the stack's API and consumers through
 * USHER_CONFIG: the IP manager gives each VM an address in 10.10.0.0/24 (the reverse zone the test's
 * named serves), and the DNS plugin has the site's agent register it. The nameserver and TSIG key
 * are the agent's settings (the stack's `agentSettings`), not the control plane's.
 */
import { dns } from "../../../shared/plugins/builtin/dns.ts";
import { ipManager } from "../../../shared/plugins/builtin/ipam.ts";
import { defineConfig } from "../../../shared/plugins/config.ts";

/** The range VMs draw from: inside test/dns/named.ts's REVERSE_ZONE (10.10.in-addr.arpa). */
export const DNS_TEST_RANGE = { name: "vms", cidr: "10.10.0.0/24", gateway: "10.10.0.1" };

export default defineConfig({
  plugins: [ipManager({ ranges: [DNS_TEST_RANGE] }), dns()],
  // Short delays, so a notice that failed once is delivered again within the test's wait.
  notifications: { retryDelaySeconds: 1, maxDelaySeconds: 2 },
});
