/**
 * A closed-loop load: a fixed number of requests in flight, each worker sending its next request as
 * soon as the previous one answers, for a fixed time. Latency is taken per request; throughput is
 * answers per second of the run; CPU is this process's (user + system) per answer, which leaves out
 * DynamoDB Local and the SQS emulator (their own processes) and keeps what the API side spends.
 */
import { quantile } from "../lib/stats.ts";
import type { Handler } from "./apps.ts";

export type LoadResult = {
  requests: number;
  rate: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  cpuUsPerRequest: number;
};

export type LoadOptions = {
  concurrency: number;
  ms: number;
  /** The `i`-th request of the run (unique names come from `i`). */
  request: (i: number) => { path: string; init: RequestInit };
  /** The status every answer must have; anything else fails the run (a benchmark of errors is no benchmark). */
  status: number;
};

export async function closedLoop(app: Handler, opts: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const until = t0 + opts.ms;
  const worker = async () => {
    while (performance.now() < until) {
      const { path, init } = opts.request(next++);
      const started = performance.now();
      const res = await app.request(path, init);
      const body = await res.text();
      latencies.push(performance.now() - started);
      if (res.status !== opts.status)
        throw new Error(`POST ${path} answered ${res.status}, not ${opts.status}: ${body.slice(0, 300)}`);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  const elapsedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    rate: latencies.length / (elapsedMs / 1000),
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    meanMs: latencies.reduce((a, b) => a + b, 0) / latencies.length,
    cpuUsPerRequest: (cpu.user + cpu.system) / latencies.length,
  };
}

/**
 * `runs` runs of each of two sides, alternating and swapping which goes first (A B, B A, A B …), so
 * drift on a shared machine (and each side's leftovers: GC, the store's compaction) falls on both.
 */
export async function interleaved<S extends string>(
  sides: readonly [S, S],
  runs: number,
  measure: (side: S) => Promise<LoadResult>,
): Promise<Record<S, LoadResult[]>> {
  const out = { [sides[0]]: [], [sides[1]]: [] } as unknown as Record<S, LoadResult[]>;
  for (let run = 0; run < runs; run++) {
    const order = run % 2 === 0 ? sides : ([sides[1], sides[0]] as const);
    for (const side of order) out[side].push(await measure(side));
  }
  return out;
}
