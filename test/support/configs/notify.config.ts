/**
 * A site config for test/plugins.test.ts, loaded by the stack's API and consumers through
 * USHER_CONFIG. One plugin, `recorder`, that appends every call it gets to the JSON-lines file named
 * by USHER_TEST_PLUGIN_LOG (read at call time, so importing this module needs no environment):
 * - `start`: fails the first two deliveries of each notification on purpose, accepts the third. The
 *   count comes from the file, so it holds whichever process (or restart) makes the delivery.
 * - `request`: every API request, accepted or rejected.
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { defineConfig } from "../../../shared/plugins/config.ts";

/** Deliveries of one notification refused before the recorder accepts it. */
export const FAILURES_BEFORE_SUCCESS = 2;

export type RecorderLine = Record<string, unknown> & { hook: string; pid: number; loggedAt: string };

function logPath(): string {
  const path = process.env.USHER_TEST_PLUGIN_LOG;
  if (!path) throw new Error("recorder: USHER_TEST_PLUGIN_LOG is not set");
  return path;
}

/** Every line the recorder wrote so far (any process). */
export function readRecorderLog(path: string): RecorderLine[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as RecorderLine);
}

function append(line: Record<string, unknown>): void {
  // One short line per append (O_APPEND): lines from the API and the consumers never interleave.
  appendFileSync(
    logPath(),
    `${JSON.stringify({ pid: process.pid, loggedAt: new Date().toISOString(), ...line })}\n`,
  );
}

export default defineConfig({
  plugins: [
    {
      name: "recorder",
      runsIn: "control-plane",
      hooks: {
        start: (_ctx, notice) => {
          const before = readRecorderLog(logPath()).filter(
            (l) => l.hook === "start" && l.eventId === notice.eventId,
          ).length;
          const ok = before >= FAILURES_BEFORE_SUCCESS;
          append({
            hook: "start",
            ok,
            eventId: notice.eventId,
            subject: notice.subject,
            opId: notice.opId,
            requestId: notice.requestId,
            attempt: notice.attempt,
          });
          if (!ok) throw new Error(`recorder: refusing delivery ${before + 1} on purpose`);
        },
        request: (_ctx, rec) => {
          append({ hook: "request", ...rec });
        },
      },
    },
  ],
  // Short delays so the test sees the retries within seconds (3 s, then 6 s).
  notifications: { maxAttempts: 5, retryDelaySeconds: 3, maxDelaySeconds: 6 },
});
