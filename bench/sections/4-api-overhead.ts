/**
 * Section 4, API overhead: what Usher's API adds to an enqueue. In this process, through
 * `app.request()`, `POST /v1/vms` on Usher's app (bearer JWT, zod validation, middleware, logging,
 * the createVm service) against a bare Hono route doing the same DynamoDB transaction and SQS send,
 * over DynamoDB Local and fauxqs, in alternating runs at a fixed concurrency; the same pair with the
 * DynamoDB and SQS calls answered in-process, which leaves the API's own work; and what verifying
 * the token costs per call, cold, warm, and for a token seen before.
 */
import type { TokenVerifierOptions } from "../../shared/auth/tokens.ts";
import { BENCH_PRINCIPAL, bareApp, createVmBody, type Handler, usherApp, withoutIo } from "../api/apps.ts";
import { type JwtCost, jwtCost, mintTokens } from "../api/jwt.ts";
import { closedLoop, interleaved, type LoadResult } from "../api/load.ts";
import { startBenchBed } from "../lib/bed.ts";
import { type Figure, figure, type Section } from "../lib/entry.ts";
import { summarize } from "../lib/stats.ts";
import { formatNumber } from "../lib/table.ts";

/** Requests in flight on each side, over the real services. */
const CONCURRENCY = 8;
/** What we aim for: Usher's p50 at most this many times the bare route's. */
const P50_RATIO_GOAL = 1.25;

// DynamoDB Local (a JVM) answers slowly for its first seconds, hence a warm-up before any run.
const QUICK = {
  runs: 4,
  runMs: 800,
  warmupMs: 800,
  noIoRuns: 3,
  noIoRunMs: 300,
  noIoWarmupMs: 800,
  jwtRuns: 3,
  coldCalls: 60,
  warmCalls: 400,
};
const FULL = {
  runs: 18,
  runMs: 2000,
  warmupMs: 3000,
  noIoRuns: 7,
  noIoRunMs: 1000,
  noIoWarmupMs: 1500,
  jwtRuns: 7,
  coldCalls: 200,
  warmCalls: 2000,
};

type Side = "usher" | "bare";
const SIDES = ["usher", "bare"] as const;

export const apiOverhead: Section = {
  id: "4-api-overhead",
  title: "API overhead (in-process, POST /v1/vms on DynamoDB Local and fauxqs)",
  async run(ctx) {
    const cfg = ctx.quick ? QUICK : FULL;
    const t0 = performance.now();
    const log = (text: string) =>
      ctx.log(`api overhead (${((performance.now() - t0) / 1000).toFixed(1)} s): ${text}`);
    log("starting DynamoDB Local and fauxqs");
    const bed = await startBenchBed(["bench"]);
    try {
      const { deps, verifyToken } = await bed.controlPlane();
      const real: Record<Side, Handler> = { usher: usherApp(deps, verifyToken), bare: bareApp(deps) };
      const offline = withoutIo(deps);
      const noIo: Record<Side, Handler> = {
        usher: usherApp(offline, verifyToken),
        bare: bareApp(offline),
      };
      const token = await bed.mintToken({
        sub: BENCH_PRINCIPAL.subject,
        project: BENCH_PRINCIPAL.project,
        roles: [...BENCH_PRINCIPAL.roles],
      });
      const auth: Record<Side, Record<string, string>> = {
        usher: { authorization: `Bearer ${token}` },
        bare: {},
      };
      // Names unique over the whole section (one per project), the same length on both sides.
      let seq = 0;
      const load = (apps: Record<Side, Handler>, side: Side, concurrency: number, ms: number) =>
        closedLoop(apps[side], {
          concurrency,
          ms,
          status: 202,
          request: () => {
            const body = JSON.stringify(createVmBody(`${side[0]}-${(seq++).toString(36).padStart(6, "0")}`));
            // Content-Length as every HTTP client sends it (without it, bodyLimit re-streams the body).
            const headers = {
              "content-type": "application/json",
              "content-length": String(Buffer.byteLength(body)),
              ...auth[side],
            };
            return { path: "/v1/vms", init: { method: "POST", headers, body } };
          },
        });

      log(`warm-up, ${cfg.warmupMs} ms each side`);
      for (const side of SIDES) await load(real, side, CONCURRENCY, cfg.warmupMs);
      log(`${cfg.runs} runs of ${cfg.runMs} ms each side, ${CONCURRENCY} in flight`);
      const withIo = await interleaved(SIDES, cfg.runs, (side) => load(real, side, CONCURRENCY, cfg.runMs));

      log(`I/O stubbed, ${cfg.noIoRuns} runs of ${cfg.noIoRunMs} ms each side, one at a time`);
      for (const side of SIDES) await load(noIo, side, 1, cfg.noIoWarmupMs);
      const stubbed = await interleaved(SIDES, cfg.noIoRuns, (side) => load(noIo, side, 1, cfg.noIoRunMs));

      log(`verifyToken, ${cfg.jwtRuns} runs`);
      const options: TokenVerifierOptions = {
        issuer: bed.env.USHER_JWT_ISSUER!,
        audience: bed.env.USHER_JWT_AUDIENCE!,
        algorithms: bed.env.USHER_JWT_ALGORITHMS!.split(","),
        jwks: JSON.parse(bed.env.USHER_JWKS!),
      };
      // Verifiers are made per run, so every token is new to each run's verifiers.
      const tokens = {
        cold: await mintTokens(bed.mintToken, cfg.coldCalls, "cold"),
        warm: await mintTokens(bed.mintToken, cfg.warmCalls, "warm"),
      };
      const jwt: JwtCost[] = [];
      for (let run = 0; run < cfg.jwtRuns; run++) jwt.push(await jwtCost(options, tokens));

      log("done");
      return figures({ withIo, stubbed, jwt }, ctx.note);
    } finally {
      await bed.stop();
    }
  },
};

function figures(
  m: {
    withIo: Record<Side, LoadResult[]>;
    stubbed: Record<Side, LoadResult[]>;
    jwt: JwtCost[];
  },
  note: (text: string) => void,
): Figure[] {
  const of = (runs: LoadResult[], f: (r: LoadResult) => number) => summarize(runs.map(f));
  const out: Figure[] = [];
  const pair = (runs: Record<Side, LoadResult[]>, usher: string, bare: string, io: boolean) => {
    const measures: [name: string, unit: string, f: (r: LoadResult) => number][] = io
      ? [
          ["requests/s", "req/s", (r) => r.rate],
          ["p50", "ms", (r) => r.p50Ms],
          ["p99", "ms", (r) => r.p99Ms],
        ]
      : [["p50", "µs", (r) => r.p50Ms * 1000]];
    measures.push(["CPU/request", "µs", (r) => r.cpuUsPerRequest]);
    for (const [name, unit, f] of measures)
      out.push(figure(`${usher} · ${name}`, of(runs.usher, f), unit, { baseline: of(runs.bare, f) }));
    for (const [name, unit, f] of measures) out.push(figure(`${bare} · ${name}`, of(runs.bare, f), unit));
  };
  pair(m.withIo, "Usher POST /v1/vms", "bare route (baseline)", true);
  // Each Usher run over the bare run beside it: the load on a shared machine drifts within seconds,
  // and a ratio of neighbours cancels more of it than a ratio of medians. The goal is checked here.
  const paired = (f: (r: LoadResult) => number) =>
    summarize(m.withIo.usher.map((r, i) => f(r) / f(m.withIo.bare[i]!)));
  out.push(
    figure(
      "Usher ÷ bare, paired runs · requests/s",
      paired((r) => r.rate),
      "×",
    ),
    figure(
      "Usher ÷ bare, paired runs · p50",
      paired((r) => r.p50Ms),
      "×",
      {
        goal: { atMost: P50_RATIO_GOAL },
      },
    ),
    figure(
      "Usher ÷ bare, paired runs · p99",
      paired((r) => r.p99Ms),
      "×",
    ),
  );
  pair(m.stubbed, "Usher, I/O stubbed", "bare route, I/O stubbed", false);

  // Against what the API spends of its own per request: Usher's CPU/request with the I/O stubbed.
  const apiCpu = of(m.stubbed.usher, (r) => r.cpuUsPerRequest).median;
  for (const [key, subject] of [
    ["cold", "verifyToken, cold"],
    ["warm", "verifyToken, warm, new token"],
    ["repeated", "verifyToken, warm, token seen (cached)"],
  ] as const) {
    const p50 = summarize(m.jwt.map((j) => j[key].p50Us));
    out.push(
      figure(`${subject} · p50`, p50, "µs"),
      figure(`${subject} · p99`, summarize(m.jwt.map((j) => j[key].p99Us)), "µs"),
      figure(`${subject} · share of API CPU`, (p50.median / apiCpu) * 100, "%"),
    );
  }

  const added = apiCpu - of(m.stubbed.bare, (r) => r.cpuUsPerRequest).median;
  note(
    `4-api-overhead: both sides answer POST /v1/vms in this process through app.request(), in alternating runs (A B, B A, …) over the same DynamoDB Local and fauxqs with the same SDK clients, ${CONCURRENCY} requests in flight. Usher: createApp with a real ES256 bearer token — request id, plugins and body-limit middleware, bearer auth, zod validation, createVm (plugin hooks, one TransactWriteItems of name reservation + VM + operation + event, then SendMessageBatch of the op to the ops queue), JSON response, one info log line formatted then dropped; no plugins configured, no Idempotency-Key. Bare route (the baseline, ×): a plain Hono route that reads the JSON body unchecked (both sides get the same body, content type and length) and sends the same four items and the same message, with no auth, validation, middleware or logging. × is Usher's median over bare's: above 1 on latency and CPU is what Usher adds, below 1 on requests/s what it costs. 'Paired runs': the median (and range) of each Usher run's figure over the bare run beside it, which cancels more of the machine's drift; the p50 goal (≤ ${P50_RATIO_GOAL}) is checked on it. CPU/request is this process only (DynamoDB Local and fauxqs are other processes). 'I/O stubbed': the same pair, one request at a time, with the DynamoDB and SQS clients answering in-process without sending — what is left is the API's own work (Usher adds ${formatNumber(added)} µs of CPU per request there). verifyToken (what the API uses): single calls timed alone; cold = a new verifier (JWKS copied, key imported on first use) and a token it never saw; warm, new token = a full ES256 signature and claims check, what every request paid before the verifier kept verified tokens; token seen = answered from the verifier's cache (a bounded LRU, never past the token's exp), which is what the requests above pay (one token reused); share of API CPU = p50 over Usher's CPU/request with I/O stubbed.`,
  );
  return out;
}
