/**
 * VM start end to end: POST /v1/vms → operation `succeeded` with the domain running on a test-bed
 * host, through API, queues, scheduler, signed command, agent, SSH and virsh. Each run is paired with
 * a reference start of the same guest spec on the same host by a KvmDriver whose commands run on the
 * host directly (DirectRunner: no SSH, no agent, no control plane): the hypervisor's own time.
 */
import { KvmDriver } from "../../bridge-agent/drivers/kvm/kvm.ts";
import type { Operation, Vm } from "../../shared/contracts/vm.ts";
import { DirectRunner, ownMs, type Timed, verbOf } from "./direct.ts";
import type { KvmStack } from "./stack.ts";

/** The guest every run starts: tiny and diskless. */
export const GUEST = { vcpus: 1, memoryMiB: 64 } as const;

export type StartRun = {
  hostId: string;
  /** POST /v1/vms sent → the long poll answered `succeeded`. */
  totalMs: number;
  /** POST /v1/vms sent → the operation's `finishedAt` (stamped by the results consumer). */
  toFinishedMs: number;
  /** The reference start's commands, each minus the no-op run just before it, summed. */
  hypervisorMs: number;
  /** The reference start's commands, by verb. */
  commands: string[];
};

export type StartRuns = {
  runs: StartRun[];
  /** The no-ops paired with the measured reference commands. */
  noopMs: number[];
};

/**
 * `warmup` unmeasured pairs, then `runs` measured ones. In each: the VM through the whole stack,
 * then deleted; then the reference start on the host it landed on, then destroyed. Each start thus
 * finds its host empty, right after a destroy.
 */
export async function measureStarts(
  k: KvmStack,
  opts: { runs: number; warmup: number; log: (text: string) => void },
): Promise<StartRuns> {
  const { bed } = k;
  const direct = new Map(bed.hosts.map((h) => [h.id, new DirectRunner(bed, h.id)]));
  const drivers = new Map(
    bed.hosts.map((h) => [
      h.id,
      new KvmDriver({ hostId: h.id, runner: direct.get(h.id)!, domainType: bed.domainType }),
    ]),
  );
  const tag = Date.now().toString(36);
  const runs: StartRun[] = [];
  const noopMs: number[] = [];
  try {
    for (let i = 0; i < opts.warmup + opts.runs; i++) {
      const measured = i >= opts.warmup;
      const runStart = performance.now();
      const e2e = await startThroughStack(k, `bench-${tag}-${i}`);
      await k.deleteVm(e2e.vm.id);

      const driver = drivers.get(e2e.vm.hostId!)!;
      const runner = direct.get(e2e.vm.hostId!)!;
      const vmId = `vm-bench-ref-${tag}-${i}`;
      runner.take();
      const state = await driver.start({
        vmId,
        vmName: `bench-ref-${i}`,
        opId: `op-bench-ref-${tag}-${i}`,
        spec: e2e.vm.spec,
        ...(e2e.vm.network ? { network: e2e.vm.network } : {}),
      });
      const commands: Timed[] = runner.take();
      if (state !== "running") throw new Error(`reference start on ${e2e.vm.hostId} ended ${state}`);
      await driver.destroy(vmId);
      runner.take();

      if (!measured) continue;
      noopMs.push(...commands.map((c) => c.noopMs));
      runs.push({
        hostId: e2e.vm.hostId!,
        totalMs: e2e.totalMs,
        toFinishedMs: e2e.toFinishedMs,
        hypervisorMs: ownMs(commands),
        commands: commands.map((c) => verbOf(c.argv)),
      });
      opts.log(
        `kvm e2e run ${runs.length}/${opts.runs} on ${e2e.vm.hostId}: total ${Math.round(e2e.totalMs)} ms, hypervisor's own ${Math.round(ownMs(commands))} ms (${((performance.now() - runStart) / 1000).toFixed(1)} s with clean-up)`,
      );
    }
  } finally {
    await Promise.all([...drivers.values()].map((d) => d.close()));
  }
  return { runs, noopMs };
}

/** One VM through the whole stack; checks it is running in the API and on its host. */
async function startThroughStack(k: KvmStack, name: string) {
  const sentAt = Date.now();
  const t0 = performance.now();
  const created = await k.api<{ vm: Vm; operation: Operation }>("/v1/vms", {
    json: { name, ...GUEST },
    expect: 202,
  });
  const op = await k.waitForOperation(created.operation.id);
  const totalMs = performance.now() - t0;
  if (op.status !== "succeeded")
    throw new Error(`start of ${name} ${op.status}: ${JSON.stringify(op.error)}`);
  const vm = await k.api<Vm>(`/v1/vms/${created.vm.id}`, { expect: 200 });
  if (vm.state !== "running" || !vm.hostId) throw new Error(`${name} is ${vm.state} on ${vm.hostId}`);
  const virsh = await k.bed.exec(vm.hostId, ["virsh", "-c", "qemu:///system", "domstate", `usher-${vm.id}`]);
  if (virsh.stdout.trim() !== "running") {
    throw new Error(`${name}: domain on ${vm.hostId} is ${virsh.stdout.trim() || virsh.stderr.trim()}`);
  }
  const toFinishedMs = op.finishedAt ? Date.parse(op.finishedAt) - sentAt : Number.NaN;
  return { vm, totalMs, toFinishedMs };
}
