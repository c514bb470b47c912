/**
 * Section 5, end to end on real KVM: on the KVM test bed (two libvirt hosts with their own sshd, in
 * mount namespaces on loopback) under the whole local stack, the time from POST /v1/vms to the
 * operation `succeeded` with the domain running, and the control plane's share of it (the total minus
 * the hypervisor's own time for the same start, measured in the same run); then the agent's SSH
 * transport's per-command overhead against a fresh `ssh` per command. Skipped, with the reason, where
 * the bed cannot run.
 */
import { kvmTestbedSupport } from "../../test/kvm/testbed.ts";
import { GUEST, measureStarts, type StartRun } from "../kvm/e2e.ts";
import { measureOverhead } from "../kvm/overhead.ts";
import { startKvmStack } from "../kvm/stack.ts";
import { type Figure, figure, type Section } from "../lib/entry.ts";
import { quantile, type Summary, summarize } from "../lib/stats.ts";

const ID = "5-kvm-e2e";

export const kvmEndToEnd: Section = {
  id: ID,
  title: "End to end on real KVM (test bed: 2 libvirt hosts over SSH, whole local stack)",
  async run(ctx) {
    const support = kvmTestbedSupport();
    if (!support.ok) {
      ctx.note(`${ID}: skipped: ${support.reason}`);
      return [];
    }
    const plan = ctx.quick
      ? // No unmeasured start in the short run: the bed and the stack alone take 20-45 s here.
        { runs: 3, warmup: 0, rounds: 6, roundsWarmup: 1 }
      : { runs: 10, warmup: 1, rounds: 30, roundsWarmup: 3 };
    ctx.log("kvm e2e: starting the test bed and the stack");
    const t0 = performance.now();
    const k = await startKvmStack();
    const since = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
    try {
      ctx.log(`kvm e2e: up after ${since()}; transport overhead, ${plan.rounds} rounds`);
      const o = await measureOverhead(k.bed, { rounds: plan.rounds, warmup: plan.roundsWarmup });
      ctx.log(`kvm e2e: ${since()}; ${plan.runs} starts through the stack, each paired with a direct one`);
      const s = await measureStarts(k, { runs: plan.runs, warmup: plan.warmup, log: ctx.log });

      const figures = [...startFigures(s.runs), ...overheadFigures(o)];
      const noop = summarize(s.noopMs).median;
      const ownSamples = o.directMs.map((d, i) => d - o.noopMs[i]!);
      const perCommand = summarize(o.agentMs).median - summarize(ownSamples).median;
      const commands = s.runs[0]?.commands.length ?? 0;
      ctx.note(
        `${ID}: guests are ${k.bed.domainType === "kvm" ? "KVM" : "TCG (type='qemu', no usable /dev/kvm)"} diskless, ${GUEST.vcpus} vCPU, ${GUEST.memoryMiB} MiB; stack with DynamoDB in memory, logs at warn. Root's ~/.bashrc is /dev/null inside each test-bed host, so neither the agent nor the ssh baseline pays for the machine's pyenv set-up.`,
      );
      ctx.note(
        `${ID}: total = POST /v1/vms sent → GET /v1/operations/{id}?waitSeconds=20 answers succeeded (then checked: VM running in the API and \`virsh domstate\` running). The long poll re-reads the operation every 200 ms (shared/services/operations.ts waitForOp), so it adds 0–200 ms; "→ finishedAt" ends at the operation's finishedAt stamp instead (same clock), without that wait.`,
      );
      ctx.note(
        `${ID}: hypervisor's own time = the same start by a KvmDriver whose commands run on the host through bed.exec (nsenter into its namespace, no SSH, no agent), right after each stack run on the same host: ${describeCommands(s.runs)}. bed.exec's own cost, a no-op (\`true\`) through it run just before each command (median ${noop.toFixed(1)} ms), is taken off that command. Control-plane share = total − hypervisor's own time per run (pairs measured back to back), then p50/p99 of those differences (difference of the medians instead: ${Math.round(
          summarize(s.runs.map((r) => r.totalMs)).median -
            summarize(s.runs.map((r) => r.hypervisorMs)).median,
        )} ms); p99 of ${s.runs.length} runs is close to their maximum${
          plan.warmup
            ? ` (after ${plan.warmup} unmeasured start)`
            : "; no unmeasured warm-up start in --quick"
        }. Of the share, the agent's SSH transport is about ${commands} commands × its overhead per command below ≈ ${Math.round(commands * perCommand)} ms.`,
      );
      ctx.note(
        `${ID}: transport: \`${o.argv.join(" ")}\` on a shut-off domain, ${o.agentMs.length} interleaved rounds. Own time on the host = bed.exec of it − bed.exec of \`true\` (median ${summarize(ownSamples).median.toFixed(1)} ms); overhead = time − that median. Agent = its SshRunner (pooled ssh2 connection, a channel and the pid wrapper per command); fresh ssh = one OpenSSH \`ssh -F /dev/null -i key -o BatchMode=yes\` process per command, with the bed's known_hosts.`,
      );
      return figures;
    } finally {
      await k.stop();
    }
  },
};

function startFigures(runs: readonly StartRun[]): Figure[] {
  const total = runs.map((r) => r.totalMs);
  const finished = runs.map((r) => r.toFinishedMs);
  const hypervisor = runs.map((r) => r.hypervisorMs);
  const share = runs.map((r) => r.totalMs - r.hypervisorMs);
  const shareFinished = runs.map((r) => r.toFinishedMs - r.hypervisorMs);
  const p99 = (xs: number[]) =>
    quantile(
      [...xs].sort((a, b) => a - b),
      0.99,
    );
  return [
    figure("start, API → running · p50", summarize(total), "ms"),
    figure("start, API → running · p99", p99(total), "ms"),
    figure("hypervisor's own time · p50", summarize(hypervisor), "ms"),
    figure("hypervisor's own time · p99", p99(hypervisor), "ms"),
    figure("control-plane share · p50", summarize(share), "ms", { goal: { atMost: 100 } }),
    figure("control-plane share · p99", p99(share), "ms"),
    figure("start, API → finishedAt · p50", summarize(finished), "ms"),
    figure("start, API → finishedAt · p99", p99(finished), "ms"),
    figure("control-plane share → finishedAt · p50", summarize(shareFinished), "ms"),
    figure("control-plane share → finishedAt · p99", p99(shareFinished), "ms"),
  ];
}

function overheadFigures(o: Awaited<ReturnType<typeof measureOverhead>>): Figure[] {
  const ownRuns = summarize(o.directMs.map((d, i) => d - o.noopMs[i]!));
  const own = ownRuns.median;
  const over = (xs: number[]): Summary => summarize(xs.map((x) => x - own));
  const fresh = over(o.freshSshMs);
  return [
    figure("domstate, agent's SSH runner · p50", summarize(o.agentMs), "ms"),
    figure("domstate, agent's SSH runner · overhead p50", over(o.agentMs), "ms", {
      baseline: fresh,
      goal: { atMost: 0.25, on: "ratio" },
    }),
    figure("domstate, fresh ssh per command · p50", summarize(o.freshSshMs), "ms"),
    figure("domstate, fresh ssh per command · overhead p50", fresh, "ms"),
    figure("domstate, own time on the host · p50", ownRuns, "ms"),
    figure("bed.exec no-op (`true`) · p50", summarize(o.noopMs), "ms"),
  ];
}

function describeCommands(runs: readonly StartRun[]): string {
  const lists = new Set(runs.map((r) => r.commands.join(", ")));
  return lists.size === 1
    ? `${runs[0]?.commands.length ?? 0} commands (${[...lists][0]})`
    : `${[...lists].join(" | ")} (differed between runs)`;
}
