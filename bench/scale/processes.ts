/**
 * The processes section 7 watches: a real bridge agent (bridge-agent/main.ts) driving the site's sim
 * hosts, and a results consumer; both read through their JSON log lines (the agent's `inventory sent`
 * and the consumer's `inventory recorded` are debug lines, so both run at debug level), and the
 * agent's memory also from /proc.
 */
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { writeAgentConfig } from "../../infra/local/agent-config.ts";
import { type Child, spawnChild } from "../../infra/local/child.ts";
import type { BenchBed } from "../lib/bed.ts";
import type { SeededHost } from "./site.ts";

const AGENT_MAIN = resolve(import.meta.dirname, "../../bridge-agent/main.ts");

type LogLine = { msg?: string; level?: string; [k: string]: unknown };

const parse = (line: string): LogLine | undefined => {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return undefined;
  }
};

/** What the agent logs once an inventory is out (bridge-agent/agent.ts). */
export type InventorySent = {
  at: string;
  hosts: number;
  parts: number;
  /** Listing and sending, in the agent. */
  ms: number;
  memory: NodeJS.MemoryUsage;
};

export type ScaleAgent = {
  child: Child;
  /** Resolves with the agent's first inventory once it is sent. */
  inventory: Promise<InventorySent>;
  /** The process's resident memory now and at its peak, from /proc (bytes). */
  rss(): Promise<{ now: number; peak: number }>;
  /** Lines at warn or error (hosts unreachable, sends failed), for the section's notes. */
  problems: string[];
};

/** Writes the agent's config (sim hosts whose state files are under `<dataDir>/sim`) and starts it. */
export async function startAgent(
  bed: BenchBed,
  site: string,
  hosts: readonly SeededHost[],
): Promise<ScaleAgent> {
  const configPath = await writeAgentConfig({
    dataDir: bed.dataDir,
    site,
    hosts: hosts.map((h) => ({ id: h.id, vcpus: h.vcpus, memoryMiB: h.memoryMiB })),
    sqsEndpoint: bed.env.USHER_SQS_ENDPOINT!,
    region: "us-east-1",
    commandQueueUrl: bed.resources.queueUrls.agents[site]!,
    resultsQueueUrl: bed.resources.queueUrls.results,
    controlPlanePublicKey: bed.keys.controlPlane.publicJwk,
    signingKey: bed.keys.agents[site]!.privateJwk,
    delayScale: 0,
    pollWaitSeconds: 20,
    // One inventory per start: the section starts the agent once per measured inventory.
    inventoryIntervalSeconds: 86_400,
    logLevel: "debug",
  });
  const problems: string[] = [];
  let sent: (v: InventorySent) => void = () => {};
  const inventory = new Promise<InventorySent>((r) => {
    sent = r;
  });
  const child = spawnChild({
    name: `agent-${site}`,
    command: process.execPath,
    args: [AGENT_MAIN, "--config", configPath],
    sink: (_source, line) => {
      const l = parse(line);
      if (l?.msg === "inventory sent") sent(l as unknown as InventorySent);
      else if (l?.level === "warn" || l?.level === "error") problems.push(line.slice(0, 300));
    },
  });
  const exited = child.exited.then((e) => {
    throw new Error(
      `the agent exited (${e.code ?? e.signal}) before its inventory: ${child.tail().join("\n")}`,
    );
  });
  return {
    child,
    inventory: Promise.race([inventory, exited]),
    rss: () => procRss(child.pid),
    problems,
  };
}

/** VmRSS and VmHWM (the peak) of a process, in bytes. */
async function procRss(pid: number): Promise<{ now: number; peak: number }> {
  const status = await readFile(join("/proc", String(pid), "status"), "utf8");
  const kib = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { now: kib("VmRSS") * 1024, peak: kib("VmHWM") * 1024 };
}

/** A results consumer process, counting the hosts it has recorded per inventory (`at`). */
export type ResultsWatch = {
  child: Child;
  /** Resolves once `hosts` hosts of the inventory stamped `at` are recorded, with when (performance.now()). */
  recorded(at: string, hosts: number, timeoutMs: number): Promise<number>;
  /** Parts recorded per inventory. */
  parts(at: string): number;
  /** Drift lines logged (every VM agrees with its host: expect none). */
  drifts: number;
  problems: string[];
};

export async function startResultsConsumer(bed: BenchBed): Promise<ResultsWatch> {
  const byAt = new Map<string, { hosts: number; parts: number; lastAt: number }>();
  const watch: ResultsWatch = {
    child: undefined as unknown as Child,
    drifts: 0,
    problems: [],
    parts: (at) => byAt.get(at)?.parts ?? 0,
    async recorded(at, hosts, timeoutMs) {
      const until = performance.now() + timeoutMs;
      for (;;) {
        const seen = byAt.get(at);
        if (seen && seen.hosts >= hosts) return seen.lastAt;
        if (!watch.child.running())
          throw new Error(`the results consumer exited: ${watch.child.tail().join("\n")}`);
        if (performance.now() > until)
          throw new Error(`${seen?.hosts ?? 0} of ${hosts} hosts recorded after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
  let ready: () => void = () => {};
  const running = new Promise<void>((r) => {
    ready = r;
  });
  watch.child = bed.consumer(
    "results",
    "results",
    (_source, line) => {
      const l = parse(line);
      if (!l) return;
      if (l.msg === "inventory recorded") {
        const at = String(l.at);
        const seen = byAt.get(at) ?? { hosts: 0, parts: 0, lastAt: 0 };
        seen.hosts += Number(l.hosts);
        seen.parts++;
        seen.lastAt = performance.now();
        byAt.set(at, seen);
      } else if (l.msg === "drift") watch.drifts++;
      else if (l.msg === "consumers running") ready();
      else if (l.level === "warn" || l.level === "error") watch.problems.push(line.slice(0, 300));
    },
    { USHER_LOG_LEVEL: "debug" },
  );
  await Promise.race([
    running,
    watch.child.exited.then(() => {
      throw new Error(`the results consumer exited at start: ${watch.child.tail().join("\n")}`);
    }),
  ]);
  return watch;
}
