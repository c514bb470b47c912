/**
 * Test helpers: a reader that drains the results queue, verifying every report as the control plane
 * would, and a `waitFor` poll.
 */
import type { AgentInventory, AgentReport, AgentResult } from "../../shared/contracts/index.ts";
import { verifyReport } from "../../shared/signing/index.ts";
import type { LocalSqs } from "./local-sqs.ts";

export type ReportReader = {
  reports: AgentReport[];
  /** Tokens that failed verification (should stay empty). */
  rejected: unknown[];
  results(opId?: string): AgentResult[];
  inventories(): AgentInventory[];
  stop(): Promise<void>;
};

export function readReports(
  sqs: LocalSqs,
  queueUrl: string,
  agentKeys: Record<string, CryptoKey>,
): ReportReader {
  const reports: AgentReport[] = [];
  const rejected: unknown[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      for (const m of await sqs.receive(queueUrl, 0)) {
        try {
          reports.push((await verifyReport(m.body, (site) => agentKeys[site])).report);
        } catch (err) {
          rejected.push(err);
        }
        await sqs.delete(queueUrl, m.receiptHandle);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    reports,
    rejected,
    results: (opId) =>
      reports.filter((r): r is AgentResult => r.type === "result" && (!opId || r.opId === opId)),
    inventories: () => reports.filter((r): r is AgentInventory => r.type === "inventory"),
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

type Truthy<T> = Exclude<T, false | 0 | "" | null | undefined>;

/** Polls `check` until it returns a truthy value (which is returned) or `timeoutMs` passes. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  timeoutMs = 5_000,
  what = "condition",
): Promise<Truthy<T>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as Truthy<T>;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
