/**
 * A site config for test/leases.test.ts, loaded by the stack's API and consumers through
 * USHER_CONFIG: short leases destroyed at expiry, and `lease-recorder`, a notification plugin that
 * appends each `lease_expiring` / `lease_expired` it is told about to the JSON-lines file named by
 * USHER_TEST_LEASE_LOG (read at call time, so importing this module needs no environment).
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { leases } from "../../../shared/plugins/builtin/leases.ts";
import { defineConfig } from "../../../shared/plugins/config.ts";
import type { Notice } from "../../../shared/plugins/types.ts";

export type LeaseNoticeLine = Pick<
  Notice,
  "event" | "eventId" | "type" | "subject" | "project" | "data" | "at"
>;

/** Every notice the recorder wrote so far. */
export function readLeaseNotices(path: string): LeaseNoticeLine[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as LeaseNoticeLine);
}

function record(notice: Notice): void {
  const path = process.env.USHER_TEST_LEASE_LOG;
  if (!path) throw new Error("lease-recorder: USHER_TEST_LEASE_LOG is not set");
  const { event, eventId, type, subject, project, data, at } = notice;
  // One short line per append (O_APPEND): lines never interleave.
  appendFileSync(path, `${JSON.stringify({ event, eventId, type, subject, project, data, at })}\n`);
}

export default defineConfig({
  plugins: [
    leases({ maxSeconds: 3600, warnBeforeSeconds: 5, onExpiry: "destroy" }),
    {
      name: "lease-recorder",
      runsIn: "control-plane",
      hooks: {
        lease_expiring: (_ctx, notice) => record(notice),
        lease_expired: (_ctx, notice) => record(notice),
      },
    },
  ],
});
