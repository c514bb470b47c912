/**
 * Per-command overhead of the agent's SSH transport against a fresh OpenSSH client per command, for
 * one read-only command the agent runs on every operation: `virsh domstate --reason <uuid>` (the
 * driver's status check), on a defined, shut-off domain. Three ways, interleaved round by round:
 *
 * - agent: the agent's SshRunner (one pooled ssh2 connection, a channel per command, the pid
 *   wrapper), called as the driver calls it;
 * - fresh ssh: `ssh -p <port> root@<addr> <command line>`, one OpenSSH process (and handshake) each;
 * - direct: the command on the host through `bed.exec`, right after a no-op (`true`) the same way:
 *   their difference is the command's own time.
 */
import { execFile } from "node:child_process";
import * as cmd from "../../bridge-agent/drivers/kvm/commands.ts";
import { buildDomainXml, domainUuid } from "../../bridge-agent/drivers/kvm/xml.ts";
import { commandLine } from "../../bridge-agent/transport/quote.ts";
import { SshRunner } from "../../bridge-agent/transport/ssh.ts";
import type { Testbed, TestbedHost } from "../../test/kvm/testbed.ts";
import { timeExec, timeNoop } from "./direct.ts";
import { GUEST } from "./e2e.ts";

export type OverheadSamples = {
  /** The command through the agent's SSH runner, per round. */
  agentMs: number[];
  /** The command through a fresh `ssh` process, per round. */
  freshSshMs: number[];
  /** The command through `bed.exec`, per round. */
  directMs: number[];
  /** `true` through `bed.exec`, just before the direct command, per round. */
  noopMs: number[];
  /** The command, as the agent runs it (before its wrapper). */
  argv: string[];
};

type Way = "agent" | "freshSsh" | "direct";
const WAYS: readonly Way[] = ["agent", "freshSsh", "direct"];

export async function measureOverhead(
  bed: Testbed,
  opts: { rounds: number; warmup: number },
): Promise<OverheadSamples> {
  const host = bed.hosts[0]!;
  const uri = host.libvirtUri;
  const vmId = `vm-bench-probe-${Date.now().toString(36)}`;
  const uuid = domainUuid(vmId);
  const xml = buildDomainXml({
    vmId,
    vmName: "bench-probe",
    opId: `op-bench-probe-${Date.now().toString(36)}`,
    uuid,
    spec: GUEST,
    domainType: bed.domainType,
  });
  const defined = await bed.exec(host.id, cmd.define(uri), { input: xml });
  if (defined.code !== 0) throw new Error(`virsh define on ${host.id}: ${defined.stderr.trim()}`);
  const argv = cmd.domstate(uri, uuid);
  const runner = new SshRunner({
    hostId: host.id,
    address: host.address,
    ssh: {
      user: "root",
      port: host.port,
      privateKeyPath: bed.clientKeyPath,
      hostKeyFingerprint: host.hostKeyFingerprint,
    },
  });
  const out: OverheadSamples = { agentMs: [], freshSshMs: [], directMs: [], noopMs: [], argv };
  const time: Record<Way, (keep: boolean) => Promise<number>> = {
    agent: async () => {
      const t0 = performance.now();
      // As VirshHost.exec calls it: with the driver's per-command timeout.
      const r = await runner.run(argv, { timeoutMs: 120_000 });
      const ms = performance.now() - t0;
      expectShutOff("agent's SSH runner", r.code, r.stdout, r.stderr);
      return ms;
    },
    freshSsh: () => freshSsh(bed, host, argv),
    direct: async (keep) => {
      const noop = await timeNoop(bed, host.id);
      if (keep) out.noopMs.push(noop);
      return timeExec(bed, host.id, argv);
    },
  };
  try {
    // The first agent command also opens the pooled connection, which the agent keeps open.
    for (let round = 0; round < opts.warmup + opts.rounds; round++) {
      // Each way goes first in turn, so none always follows the same neighbour.
      for (let j = 0; j < WAYS.length; j++) {
        const way = WAYS[(round + j) % WAYS.length]!;
        const keep = round >= opts.warmup;
        const ms = await time[way](keep);
        if (keep) out[`${way}Ms`].push(ms);
      }
    }
  } finally {
    await runner.close();
    await bed.exec(host.id, cmd.undefine(uri, uuid));
  }
  return out;
}

/** One `ssh` process for the command, with the bed's key and known_hosts, never prompting. */
function freshSsh(bed: Testbed, host: TestbedHost, argv: readonly string[]): Promise<number> {
  const args = [
    "-F",
    "/dev/null", // this machine's own client config plays no part
    "-i",
    bed.clientKeyPath,
    "-p",
    String(host.port),
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${bed.knownHostsPath}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "LogLevel=ERROR",
    `root@${host.address}`,
    commandLine(argv),
  ];
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile("ssh", args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const ms = performance.now() - t0;
      const code = err ? ((err as { code?: unknown }).code ?? 1) : 0;
      try {
        expectShutOff("fresh ssh", typeof code === "number" ? code : 1, stdout, stderr);
        resolve(ms);
      } catch (e) {
        reject(e);
      }
    });
  });
}

function expectShutOff(way: string, code: number, stdout: string, stderr: string): void {
  if (code !== 0 || !stdout.startsWith("shut off")) {
    throw new Error(`domstate through ${way}: exit ${code}, ${JSON.stringify(stdout || stderr)}`);
  }
}
