/**
 * The KVM test bed by hand:
 *
 *   node test/kvm/cli.ts up [--base-port 2201] [--state /tmp/usher-kvm-testbed.json]
 *   node test/kvm/cli.ts down [--state /tmp/usher-kvm-testbed.json]
 *
 * `up` starts the bed, prints how to reach it, writes its state file and stays in the foreground;
 * Ctrl-C (or `down` from another shell, which signals it) stops the bed. If that process is gone,
 * `down` stops the bed from the state file itself.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { pidAlive, pollUntil } from "./proc.ts";
import { type BedState, startKvmTestbed, stopKvmTestbed } from "./testbed.ts";

type StateFile = { cliPid: number; bed: BedState };

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      "base-port": { type: "string", default: "2201" },
      state: { type: "string", default: "/tmp/usher-kvm-testbed.json" },
    },
  });
  const statePath = values.state;
  if (positionals[0] === "up") {
    const basePort = values["base-port"] === "auto" ? "auto" : Number(values["base-port"]);
    const bed = await startKvmTestbed({ basePort });
    writeFileSync(statePath, JSON.stringify({ cliPid: process.pid, bed: bed.state() } satisfies StateFile));
    const ssh = `ssh -i ${bed.clientKeyPath} -o UserKnownHostsFile=${bed.knownHostsPath}`;
    for (const h of bed.hosts) {
      console.log(
        `${h.id}: ${ssh} -p ${h.port} root@${h.address} virsh list --all   (${h.hostKeyFingerprint})`,
      );
    }
    const [from, to] = bed.hosts;
    if (from && to) {
      console.log(
        `on ${from.id}: virsh migrate --live DOM '${from.migrationUri(to)}' ${to.migrationDataUri}`,
      );
    }
    console.log(`domain type: ${bed.domainType}; state: ${statePath}; Ctrl-C or "down" stops it`);
    const keepAlive = setInterval(() => {}, 1 << 30);
    const shutdown = async () => {
      clearInterval(keepAlive);
      await bed.stop();
      rmSync(statePath, { force: true });
      console.log("stopped");
      process.exit(0);
    };
    process.once("SIGINT", shutdown);
    process.once("SIGTERM", shutdown);
  } else if (positionals[0] === "down") {
    const state = JSON.parse(readFileSync(statePath, "utf8")) as StateFile;
    if (pidAlive(state.cliPid)) {
      process.kill(state.cliPid, "SIGTERM");
      if (!(await pollUntil(() => !pidAlive(state.cliPid), 60_000, 200)))
        throw new Error("`up` did not stop");
    } else {
      await stopKvmTestbed(state.bed);
    }
    rmSync(statePath, { force: true });
  } else {
    console.error("usage: node test/kvm/cli.ts up|down [--base-port N|auto] [--state FILE]");
    process.exitCode = 2;
  }
}

await main();
