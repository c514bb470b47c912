/**
 * `--check`: validates the configuration, then reaches every host through its driver (SSH host key,
 * authentication, and the hypervisor's tool answering) and prints one line per host. Nothing on any
 * host is changed: the check is an inventory, which only reads.
 */
import { importEd25519 } from "../shared/signing/keys.ts";
import type { AgentConfig } from "./config.ts";
import { createDriver } from "./drivers/registry.ts";
import { SimWorld } from "./drivers/sim-world.ts";
import { RunnerPool } from "./transport/pool.ts";

export type HostCheck = { hostId: string; kind: string; ok: boolean; detail: string };

export async function checkConfig(
  config: AgentConfig,
  opts: { timeoutMs?: number } = {},
): Promise<HostCheck[]> {
  // The keys must import: an agent that cannot verify commands or sign reports is useless.
  await importEd25519(config.controlPlanePublicKey);
  await importEd25519(config.signingKey);
  const simWorld = new SimWorld();
  const runners = new RunnerPool(config.hosts);
  const checks = await Promise.all(
    config.hosts.map(async (host): Promise<HostCheck> => {
      const base = { hostId: host.id, kind: host.kind };
      let driver: ReturnType<typeof createDriver> | undefined;
      try {
        driver = createDriver(host, { simWorld, runners });
        const signal = AbortSignal.timeout(opts.timeoutMs ?? 20_000);
        const inv = await driver.inventory({ signal });
        if (!inv.reachable) return { ...base, ok: false, detail: inv.error?.message ?? "unreachable" };
        const free = inv.free ? `, free ${inv.free.vcpus} vCPUs / ${inv.free.memoryMiB} MiB` : "";
        return { ...base, ok: true, detail: `${inv.domains.length} domains${free}` };
      } catch (err) {
        const code = (err as { code?: string }).code;
        return { ...base, ok: false, detail: `${code ? `${code}: ` : ""}${(err as Error).message}` };
      } finally {
        await driver?.close().catch(() => {});
      }
    }),
  );
  await runners.close();
  return checks;
}

export function formatChecks(checks: HostCheck[]): string {
  return checks.map((c) => `${c.ok ? "ok  " : "FAIL"} ${c.hostId} (${c.kind}): ${c.detail}`).join("\n");
}
