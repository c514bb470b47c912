/**
 * Section 6, cost: what one operation of each kind costs on AWS, and what an idle deployment costs a
 * month. Real operations run in this process over DynamoDB Local and fauxqs through the code Lambda
 * would run (the API app, the scheduler and results handlers fed by a stand-in for Lambda's SQS
 * pollers, the agent's part played with signed reports); an SDK middleware counts DynamoDB's
 * consumed capacity and SQS's billed requests per function (bench/cost/meter.ts), and the counts are
 * priced at AWS's published us-east-1 on-demand rates (bench/cost/prices.ts). `new Meter({ trace:
 * true })` lists every DynamoDB call with its units and the service line that made it.
 */
import type { HostInventory } from "../../shared/contracts/messages.ts";
import { getVmItem } from "../../shared/services/vms.ts";
import {
  heartbeat,
  IDLE_ASSUMPTIONS,
  type IdleMeasured,
  idleMonth,
  inventorySizes,
  perUnit,
  seedSteadySite,
  siteRead,
  tableBytes,
} from "../cost/idle.ts";
import { Meter, type Tally } from "../cost/meter.ts";
import { bill, measures, total } from "../cost/model.ts";
import { OP_KINDS, runLifecycle, startVm } from "../cost/ops.ts";
import { describePrices, MINUTES_PER_MONTH, PRICES, cost as price } from "../cost/prices.ts";
import { createRig } from "../cost/rig.ts";
import { LAMBDA_MEMORY_GB } from "../cost/units.ts";
import { startBenchBed } from "../lib/bed.ts";
import { type Figure, figure, type Section } from "../lib/entry.ts";
import { summarize } from "../lib/stats.ts";

/** The site the operations run in (4 hosts), and the site of 1,000 hosts for reads and heartbeats. */
const SITE = "a";
const BIG = "big";
const SMALL_HOSTS = 4;
const BIG_HOSTS = 1000;
/** Of the seven kinds, the ones that place (read the whole site): create+start and migrate. */
const PLACING_SHARE = 2 / OP_KINDS.length;

/** A figure from samples: a plain number when every run gave the same (counts are deterministic). */
function fig(name: string, samples: number[], unit: string, goal?: { atMost: number }): Figure {
  const same = samples.every((s) => s === samples[0]);
  return figure(name, same ? samples[0]! : summarize(samples), unit, goal ? { goal } : {});
}

const usdPer1000 = (t: Tally) => 1000 * total(bill(t));
const fmt = (usd: number) => `$${usd < 0.01 ? usd.toPrecision(2) : usd.toFixed(2)}`;

export const cost: Section = {
  id: "6-cost",
  title: "Cost per operation and of an idle deployment at AWS on-demand rates (us-east-1)",
  async run(ctx) {
    const runs = ctx.quick ? 1 : 4;
    const heartbeatHosts = ctx.quick ? 20 : 200;
    ctx.log(`cost: bed with ${SMALL_HOSTS} hosts, ${runs} measured VM lifecycles`);
    const bed = await startBenchBed([SITE, BIG]);
    try {
      await bed.seedHosts(SITE, SMALL_HOSTS, (i) => ({
        kind: "sim",
        address: `10.0.0.${i + 1}`,
        capacity: { vcpus: 64, memoryMiB: 262_144 },
        ratios: { cpu: 4, memory: 1 },
        labels: { rack: `r${i % 2}` },
      }));
      const meter = new Meter();
      const token = await bed.mintToken({ sub: "bench-user", project: "bench", roles: ["user"] });
      const rig = await createRig(bed, meter, { token });

      // Not counted: each function's first invocations compile their code (--quick: one operation).
      if (ctx.quick) await startVm(rig, SITE, "cost-warmup");
      else await runLifecycle(rig, meter, SITE, "cost-warmup");
      const before = await tableBytes(rig.inspect);
      const lifecycles: Awaited<ReturnType<typeof runLifecycle>>[] = [];
      for (let r = 0; r < runs; r++) lifecycles.push(await runLifecycle(rig, meter, SITE, `cost-${r}`));
      const history = (await tableBytes(rig.inspect)).bytes - before.bytes;

      ctx.log("cost: idle measurements");
      meter.take();
      await rig.sweep();
      const sweepSmall = meter.take();
      await rig.notify();
      const notifier = meter.take();
      const smallRead = await siteRead(rig, meter, SITE);

      // Heartbeats of the 4-host site while it runs two VMs: what a VM adds to its host's heartbeat.
      const vmIds = [await startVm(rig, SITE, "cost-hb-1"), await startVm(rig, SITE, "cost-hb-2")];
      const domains = new Map<string, HostInventory["domains"]>();
      for (const id of vmIds) {
        const vm = (await getVmItem(rig.inspect, id))!;
        const list = domains.get(vm.hostId!) ?? [];
        list.push({
          uuid: `uuid-${id}`,
          vmId: id,
          name: vm.name,
          powerState: "running",
          vcpus: 2,
          memoryMiB: 2048,
        });
        domains.set(vm.hostId!, list);
      }
      const smallIds = Array.from({ length: SMALL_HOSTS }, (_, i) => `${SITE}-${i}`);
      await heartbeat(rig, meter, SITE, smallIds, domains); // the first one adds each host's summary
      const withVms = await heartbeat(rig, meter, SITE, smallIds, domains);

      ctx.log(`cost: a steady site of ${BIG_HOSTS} hosts; heartbeats of ${heartbeatHosts}`);
      const bigIds = await seedSteadySite(rig.inspect, BIG, BIG_HOSTS);
      const bigRead = await siteRead(rig, meter, BIG);
      if (bigRead.hosts !== BIG_HOSTS) throw new Error(`site read found ${bigRead.hosts} hosts`);
      meter.take();
      await rig.sweep();
      const sweepBig = meter.take();
      const perHost = perUnit(
        await heartbeat(rig, meter, BIG, bigIds.slice(0, heartbeatHosts)),
        heartbeatHosts,
      );
      const hostMs = perHost.invocations[0]!.modeledMs;
      const perVm = {
        rru: (withVms.rru - SMALL_HOSTS * perHost.rru) / vmIds.length,
        wru: (withVms.wru - SMALL_HOSTS * perHost.wru) / vmIds.length,
        modeledMs: Math.max(0, (withVms.invocations[0]!.modeledMs - SMALL_HOSTS * hostMs) / vmIds.length),
      };
      const sizes = await inventorySizes(rig, BIG);
      const stored = await tableBytes(rig.inspect);
      const idle: IdleMeasured = {
        notifier,
        perHost,
        perVm,
        inventoryBytesPerHost: sizes.perHost,
        inventoryEnvelopeBytes: sizes.envelope,
        hostStoredBytes: stored.hostBytes,
      };

      // ---- figures ----
      const figures: Figure[] = [];
      const per = (kind: (typeof OP_KINDS)[number] | "status read") =>
        lifecycles.map((l) => measures(kind === "status read" ? l.statusRead : l.kinds[kind]));
      for (const kind of [...OP_KINDS, "status read"] as const) {
        const m = per(kind);
        const subject = kind === "status read" ? "status read (GET operation)" : kind;
        figures.push(
          fig(
            `${subject} · RRU`,
            m.map((x) => x.rru),
            "RRU",
          ),
          fig(
            `${subject} · WRU`,
            m.map((x) => x.wru),
            "WRU",
          ),
          fig(
            `${subject} · SQS requests`,
            m.map((x) => x.sqs),
            "requests",
          ),
          fig(
            `${subject} · invocations`,
            m.map((x) => x.invocations),
            "invocations",
          ),
          fig(
            `${subject} · Lambda ms measured`,
            m.map((x) => x.wallMs),
            "ms",
          ),
          fig(
            `${subject} · Lambda ms modeled`,
            m.map((x) => x.modeledMs),
            "ms",
          ),
          fig(
            `${subject} · $/1,000 ops`,
            m.map((x) => x.usd * 1000),
            "$",
          ),
        );
      }
      // A whole-site read inside a scheduler invocation: its units and time, not another invocation.
      const readUsd = (t: Tally) => total({ ...bill(t), lambdaRequests: 0 });
      for (const [subject, read] of [
        [`site read, ${SMALL_HOSTS} hosts`, smallRead],
        [`site read, ${BIG_HOSTS.toLocaleString("en-US")} hosts`, bigRead],
      ] as const) {
        figures.push(
          fig(`${subject} · RRU`, [read.tally.rru], "RRU"),
          fig(`${subject} · Lambda ms modeled`, [measures(read.tally).modeledMs], "ms"),
          fig(`${subject} · $/1,000 ops`, [1000 * readUsd(read.tally)], "$"),
        );
      }
      const mixSmall = lifecycles.map(
        (l) => OP_KINDS.reduce((n, k) => n + usdPer1000(l.kinds[k]), 0) / OP_KINDS.length,
      );
      const extraRead = 1000 * PLACING_SHARE * (readUsd(bigRead.tally) - readUsd(smallRead.tally));
      figures.push(
        fig(`even mix, ${SMALL_HOSTS}-host site · $/1,000 ops`, mixSmall, "$"),
        fig(
          `even mix, ${BIG_HOSTS.toLocaleString("en-US")}-host site, cold cache · $/1,000 ops`,
          mixSmall.map((x) => x + extraRead),
          "$",
          { atMost: 0.02 },
        ),
      );
      const deployments = [
        { label: `${SMALL_HOSTS} hosts`, hosts: SMALL_HOSTS, sweep: sweepSmall },
        { label: `${BIG_HOSTS.toLocaleString("en-US")} hosts`, hosts: BIG_HOSTS, sweep: sweepBig },
      ];
      const months = deployments.map((d) => ({
        d,
        lines: idleMonth(idle, { hosts: d.hosts, vms: 0, sweep: d.sweep }),
      }));
      for (const [i, line] of months[0]!.lines.entries()) {
        for (const { d, lines } of months)
          figures.push(fig(`idle: ${line.name} · $/month, ${d.label}`, [lines[i]!.usd], "$/month"));
      }
      for (const { d, lines } of months)
        figures.push(
          fig(`idle: total · $/month, ${d.label}`, [lines.reduce((n, l) => n + l.usd, 0)], "$/month"),
        );

      // ---- notes ----
      const all = lifecycles.flatMap((l) => OP_KINDS.map((k) => l.kinds[k]));
      const sum = (f: (b: ReturnType<typeof bill>) => number) =>
        all.reduce((n, t) => n + f(bill(t)), 0) / all.length;
      const share = (f: (b: ReturnType<typeof bill>) => number) => `${fmt(1000 * sum(f))}`;
      const refused = all.reduce((n, t) => n + t.refusedWrites, 0);
      const vmMonth =
        MINUTES_PER_MONTH *
        IDLE_ASSUMPTIONS.inventoriesPerMinute *
        (price(PRICES.dynamoRead, perVm.rru) + price(PRICES.dynamoWrite, perVm.wru));
      const opsRun = runs * OP_KINDS.length;
      ctx.note(
        `6-cost: operations end to end in this process (API app → ops queue → scheduler handler → command on the agent queue → agent's signed 'running' and final reports → results handler), ${runs} run(s) after an uncounted warm-up; a 'user' token, no Idempotency-Key, the default site config (no plugins). Units and requests are deterministic (the same every run); only times vary. An operation's SQS requests count the API's send, the scheduler's command, the agent's receive, two report sends and delete, and Lambda's pollers' receive and delete per message (one message a batch, as at low rates; their empty long polls are in the idle figures). Even mix: the seven kinds alike. Mix by service, $/1,000 ops: DynamoDB ${share((b) => b.dynamo)}, SQS ${share((b) => b.sqs)}, Lambda requests ${share((b) => b.lambdaRequests)}, Lambda duration ${share((b) => b.lambdaDuration)}, API Gateway ${share((b) => b.apiGateway)}.`,
      );
      ctx.note(
        `6-cost: Lambda at ${LAMBDA_MEMORY_GB * 1024} MB, x86. 'Lambda ms measured' is the handlers' wall time here, on DynamoDB Local and fauxqs and two shared cores: not AWS's latency. Duration is priced from 'Lambda ms modeled': each invocation's own time here (wall time less the time a call was on the wire to DynamoDB Local or fauxqs; on these busy shared cores it runs high) plus an assumed AWS latency per call (DynamoDB 6 ms, transactions 12 ms, SQS 12 ms; calls made at once overlap as they did here), rounded up to the ms. Cold starts are not counted: since 2025-08-01 Lambda bills INIT too, a few hundred ms at 512 MB when a function scales out or wakes.`,
      );
      ctx.note(
        `6-cost: DynamoDB units are DynamoDB Local's ReturnConsumedCapacity (INDEXES), which it returns for every call made here, with two corrections to AWS's rules: a transaction's index writes counted once, not twice (Local doubles them), and an empty Query billed 0.5/1 RRU (Local reports 0); refused conditional writes (AWS bills them, Local reports nothing) would count 1 WRU each: ${refused} happened. Placement: the scheduler's host cache off (USHER_HOST_CACHE_MS=0), so every create+start and migrate reads its whole site (a cold cache, as for a function that places less than once per 2 s); the 1,000-host mix adds ${PLACING_SHARE.toFixed(2)} site reads of 1,000 hosts per operation instead of 4-host ones (+${fmt(extraRead)} per 1,000 ops); with a warm cache it costs what the 4-host mix does.`,
      );
      ctx.note(
        `6-cost: idle month = ${MINUTES_PER_MONTH.toLocaleString("en-US")} minutes (730 h), one site, one agent, no VMs: sweep and notifier run by EventBridge Scheduler each minute (the repository defines no AWS trigger for the notifier; once a minute is our assumption) (their handlers measured on the idle table, the sweep at each size); the agent's 20 s long polls (3 receives/min); Lambda's SQS pollers: 2 queues × 5 pollers × 3 receives/min (AWS: 'scales back to five concurrent batches, can optimize to as few as 2'); the agent's inventory every 30 s (its default), recorded host by host by the results consumer (per host measured on ${heartbeatHosts} of a steady ${BIG_HOSTS}-host site: ${perHost.rru.toFixed(2)} RRU, ${perHost.wru.toFixed(2)} WRU, ${hostMs.toFixed(1)} ms modeled), sent in ≤ 256 KiB parts billed per 64 KB chunk; storage of the host items and their index copies (${stored.hostBytes} B a host). Each running VM adds ${perVm.rru.toFixed(1)} RRU and ${perVm.wru.toFixed(1)} WRU to its host's heartbeat: ${fmt(vmMonth)} a VM-month. History: ${Math.round(history / opsRun)} B stored per operation (operation, events, index copies), ${fmt(price(PRICES.dynamoStorage, ((history / opsRun) * 1000) / 1e9))} a month per 1,000 operations kept. No free tier is applied (per account: SQS 1M requests, Lambda 1M requests and 400,000 GB-s, Scheduler 14M invocations, DynamoDB 25 GB a month).`,
      );
      ctx.note(`6-cost: rates (us-east-1, on-demand, list): ${describePrices()}.`);
      return figures;
    } finally {
      await bed.stop();
    }
  },
};
