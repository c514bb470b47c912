/**
 * A site config for test/webhook.test.ts, loaded by the stack's API and consumers through
 * USHER_CONFIG: the example `webhook()` plugin, sending `start` and `state_change` to the receiver
 * the test runs, at USHER_TEST_WEBHOOK_URL, signed with USHER_TEST_WEBHOOK_SECRET.
 *
 * Read when the module is imported, as a site's own config would read its secret: `webhook()` checks
 * its URL when it is made, and this module is imported only by the stack's processes (in `main()`,
 * through loadSiteConfig), never by the test, so nothing has to fake the environment.
 */
import { webhook } from "../../../shared/plugins/builtin/webhook.ts";
import { defineConfig } from "../../../shared/plugins/config.ts";

const url = process.env.USHER_TEST_WEBHOOK_URL;
const secret = process.env.USHER_TEST_WEBHOOK_SECRET;
if (!url || !secret)
  throw new Error("webhook.config: USHER_TEST_WEBHOOK_URL and USHER_TEST_WEBHOOK_SECRET must be set");

export default defineConfig({
  plugins: [webhook({ url, secret, events: ["start", "state_change"] })],
  // Short delays, so a refused notice is tried again within a second or two.
  notifications: { maxAttempts: 5, retryDelaySeconds: 1, maxDelaySeconds: 2 },
});
