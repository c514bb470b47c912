/** Steps of startStack that are not about wiring: host registration, agent readiness, parallel starts. */
import type { LogFields } from "../../shared/log.ts";
import { hostAddress, type SimHost } from "./agent-config.ts";
import { type Child, waitUntil } from "./child.ts";

/** Registers one simulated host; 409 (already registered, e.g. after a restart) is fine. */
export async function registerHost(
  apiUrl: string,
  token: string,
  site: string,
  host: SimHost,
  info: (msg: string, fields?: LogFields) => void,
): Promise<void> {
  const capacity = {
    vcpus: host.vcpus,
    memoryMiB: host.memoryMiB,
    ...(host.devices ? { devices: host.devices } : {}),
  };
  const res = await fetch(`${apiUrl}/v1/hosts`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({
      id: host.id,
      site,
      kind: host.kind ?? "sim",
      address: hostAddress(host),
      capacity,
    }),
  });
  const text = await res.text();
  if (res.status === 409) return info("host already registered", { hostId: host.id, site });
  if (!res.ok) throw new Error(`registering host ${host.id}: HTTP ${res.status} ${text}`);
  info("host registered", { hostId: host.id, site });
}

/**
 * Waits for the agent's `agent started` log line (it logs it once it polls). An agent that exits
 * first fails the start; one that logs something else only gets a warning after 15 s.
 */
export async function waitForAgent(
  agent: Child,
  warn: (msg: string, fields?: LogFields) => void,
): Promise<void> {
  try {
    await waitUntil(
      `${agent.name} to start`,
      async () => agent.tail().some((l) => l.includes('"agent started"')),
      {
        child: agent,
        timeoutMs: 15_000,
      },
    );
  } catch (error) {
    if (!agent.running()) throw error;
    warn("agent did not log `agent started`; going on", { name: agent.name });
  }
}

/**
 * Like Promise.all, but when one fails it waits for the rest and stops whichever of them started
 * (a DynamoDB Local that came up while fauxqs failed must not be left running).
 */
export async function allOrCleanup<T extends readonly unknown[]>(
  promises: { [K in keyof T]: Promise<T[K]> },
): Promise<T> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (!failed) return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
  await Promise.all(
    settled.map((s) => {
      const value = s.status === "fulfilled" ? (s.value as { stop?: () => Promise<void> }) : undefined;
      return typeof value?.stop === "function" ? value.stop() : undefined;
    }),
  );
  throw failed.reason;
}
