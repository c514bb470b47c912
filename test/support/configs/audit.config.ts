/**
 * Site config for test/audit.test.ts: users may ask for at most 4 vCPUs (admins 64), and every API
 * request is audited into the event log.
 */
import { argumentPolicy } from "../../../shared/plugins/builtin/arguments.ts";
import { audit } from "../../../shared/plugins/builtin/audit.ts";
import { defineConfig } from "../../../shared/plugins/config.ts";

export default defineConfig({
  plugins: [
    argumentPolicy({
      rules: [
        { limits: { vcpus: 4, memoryMiB: 16 * 1024 } },
        { scope: { roles: ["admin"] }, limits: { vcpus: 64, memoryMiB: 256 * 1024 } },
      ],
    }),
    audit(),
  ],
});
