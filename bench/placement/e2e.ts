/**
 * Placement end to end on DynamoDB Local: VMs whose start operations wait on the ops queue, placed by
 * K scheduling consumer processes (the local stack's own, functions/queue-consumers/local.ts) on a
 * site of many hosts. What it measures comes from the consumers' own log lines (`operation
 * dispatched`, `capacity claimed` with its attempt) and, afterwards, from the hosts' records.
 */
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
} from "@aws-sdk/client-sqs";
import { ScanCommand, TransactWriteCommand } from "@aws-sdk/lib-dynamodb";
import type { Child } from "../../infra/local/child.ts";
import type { Deps } from "../../shared/services/context.ts";
import { createVm } from "../../shared/services/vms.ts";
import type { ClaimItem, HostItem } from "../../shared/store/items.ts";
import type { BenchBed } from "../lib/bed.ts";
import { random } from "../lib/random.ts";

const BENCH_ADMIN = { subject: "bench", project: "bench", roles: ["admin"] as const };

/** Hosts of a mid-size site: mostly general-purpose, some large, a few with GPUs. */
export function hostSpec(i: number) {
  const kind = i % 10;
  if (kind < 6)
    return { kind: "sim" as const, address: `h${i}.sim`, capacity: { vcpus: 32, memoryMiB: 131_072 } };
  if (kind < 9)
    return { kind: "sim" as const, address: `h${i}.sim`, capacity: { vcpus: 64, memoryMiB: 262_144 } };
  return {
    kind: "sim" as const,
    address: `h${i}.sim`,
    capacity: { vcpus: 96, memoryMiB: 393_216, devices: { "nvidia-a100": 4 } },
  };
}

/** Mixed VM specs, seeded: 1–8 vCPUs, 1–32 GiB, one in twenty with a GPU. */
export function vmSpecs(n: number, seed: number) {
  const r = random(seed);
  return Array.from({ length: n }, () => {
    const [vcpus, memoryMiB] = r.pick([
      [[1, 1024], 20],
      [[2, 4096], 35],
      [[4, 8192], 25],
      [[8, 32_768], 15],
    ] as const);
    return { vcpus, memoryMiB, ...(r.next() < 0.05 ? { devices: { "nvidia-a100": 1 } } : {}) };
  });
}

/** Lines the consumers logged, parsed, with the time they were written. */
export type Logged = { msg: string; opId?: string; attempt?: number; at: number };

export type Staged = { opIds: Set<string>; bodies: { Id: string; MessageBody: string }[] };

/**
 * Creates `n` VMs in `site` through the real service, their start operations sent to a staging queue
 * of the bed (not the ops queue the consumers read), and takes the messages off it again.
 */
export async function stageStarts(
  bed: BenchBed,
  deps: Deps,
  site: string,
  n: number,
  seed: number,
): Promise<Staged> {
  const sqs = deps.queues.sqs;
  const staging = (
    await sqs.send(new CreateQueueCommand({ QueueName: `usher-bench-staging-${site}-${seed}` }))
  ).QueueUrl!;
  const { deps: stagingDeps } = await bed.controlPlane({ extraEnv: { USHER_OPS_QUEUE_URL: staging } });
  const specs = vmSpecs(n, seed);
  const opIds = new Set<string>();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < n; i = next++) {
      const res = await createVm(
        stagingDeps,
        { principal: BENCH_ADMIN, requestId: `req-bench-${seed}-${i}` },
        { name: `b${seed}-${i}`, site, ...specs[i]! },
      );
      opIds.add((res.body as { operation: { id: string } }).operation.id);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  const bodies: Staged["bodies"] = [];
  while (bodies.length < n) {
    const out = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: staging, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
    );
    const got = out.Messages ?? [];
    if (got.length === 0) throw new Error(`staging queue held ${bodies.length} of ${n} starts`);
    for (const m of got) bodies.push({ Id: `m${bodies.length}`, MessageBody: m.Body! });
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: staging,
        Entries: got.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle! })),
      }),
    );
  }
  return { opIds, bodies };
}

/** A fresh queue of the bed's SQS (per round: no message of one round is held by a poller of another). */
export async function newQueue(deps: Deps, name: string): Promise<string> {
  return (await deps.queues.sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl!;
}

/** Sends the staged starts to `queueUrl`, ten a request, as fast as the queue takes them. */
export async function release(deps: Deps, staged: Staged, queueUrl: string): Promise<void> {
  const batches: (typeof staged.bodies)[] = [];
  for (let i = 0; i < staged.bodies.length; i += 10) batches.push(staged.bodies.slice(i, i + 10));
  await Promise.all(
    batches.map((Entries) =>
      deps.queues.sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries })),
    ),
  );
}

/** Waits until every operation in `opIds` has a `operation dispatched` line (or a failure), or times out. */
export async function waitDispatched(
  logged: Logged[],
  opIds: Set<string>,
  timeoutMs: number,
  consumers: Child[],
): Promise<{ done: Logged[]; failed: number }> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const done = logged.filter((l) => l.msg === "operation dispatched" && l.opId && opIds.has(l.opId));
    const failed = logged.filter((l) => l.msg === "operation failed" && l.opId && opIds.has(l.opId)).length;
    if (done.length + failed >= opIds.size) return { done, failed };
    for (const c of consumers) if (!c.running()) throw new Error(`${c.name} exited:\n${c.tail().join("\n")}`);
    if (Date.now() > until)
      throw new Error(`only ${done.length} of ${opIds.size} placements done after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Hosts over capacity in `sites`: free counters below zero, or claims adding up to more than a host's
 * limit. One consistent scan of the table after the runs (the bench's table holds little else).
 */
export async function overcommitted(deps: Deps, sites: readonly string[]): Promise<Map<string, number>> {
  const hosts = new Map<string, HostItem>();
  const claims = new Map<string, ClaimItem[]>();
  let start: Record<string, unknown> | undefined;
  do {
    const out = await deps.db.doc.send(
      new ScanCommand({
        TableName: deps.db.table,
        FilterExpression: "sk = :host OR begins_with(sk, :claim)",
        ExpressionAttributeValues: { ":host": "HOST", ":claim": "CLAIM#" },
        ConsistentRead: true,
        ...(start ? { ExclusiveStartKey: start } : {}),
      }),
    );
    for (const item of out.Items ?? []) {
      if (item.sk === "HOST") hosts.set(item.id as string, item as HostItem);
      else {
        const c = item as ClaimItem;
        claims.set(c.hostId, [...(claims.get(c.hostId) ?? []), c]);
      }
    }
    start = out.LastEvaluatedKey;
  } while (start);
  const over = new Map(sites.map((s) => [s, 0]));
  for (const host of hosts.values()) {
    if (!over.has(host.site)) continue;
    const mine = claims.get(host.id) ?? [];
    const vcpus = mine.reduce((a, c) => a + c.vcpus, 0);
    const memory = mine.reduce((a, c) => a + c.memoryMiB, 0);
    const devices: Record<string, number> = {};
    for (const c of mine) for (const [m, k] of Object.entries(c.devices)) devices[m] = (devices[m] ?? 0) + k;
    const negative =
      host.freeVcpus < 0 || host.freeMemoryMiB < 0 || Object.values(host.freeDevices).some((k) => k < 0);
    const beyond =
      vcpus > host.limitVcpus ||
      memory > host.limitMemoryMiB ||
      Object.entries(devices).some(([m, k]) => k > (host.limitDevices[m] ?? 0));
    if (negative || beyond) over.set(host.site, over.get(host.site)! + 1);
  }
  return over;
}

/**
 * DynamoDB Local's own ceiling for the write a placement makes: transactions shaped like a start's
 * claim (the host's counters under a condition, the claim, the VM, the operation, an event with an
 * index entry), on scratch items, `inFlight` at a time for `ms`. What no scheduler on this machine can
 * beat; the placements measured alongside are compared with it.
 */
export async function claimShapedCeiling(
  deps: Deps,
  hostIds: string[],
  opts: { inFlight: number; ms: number; tag: string },
): Promise<number> {
  const table = deps.db.table;
  let n = 0;
  const until = Date.now() + opts.ms;
  const started = Date.now();
  const worker = async (w: number) => {
    while (Date.now() < until) {
      const i = n++;
      const id = `${opts.tag}-${i}`;
      const host = hostIds[(i * 31 + w) % hostIds.length]!;
      await deps.db.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Update: {
                TableName: table,
                Key: { pk: `HOST#${host}`, sk: "HOST" },
                UpdateExpression: "SET #b = if_not_exists(#b, :z) + :one",
                ConditionExpression: "attribute_exists(pk)",
                ExpressionAttributeNames: { "#b": "benchTouches" },
                ExpressionAttributeValues: { ":z": 0, ":one": 1 },
              },
            },
            {
              Put: {
                TableName: table,
                Item: { pk: `BENCH#${id}`, sk: "CLAIM", vcpus: 2, memoryMiB: 4096 },
                ConditionExpression: "attribute_not_exists(pk)",
              },
            },
            { Put: { TableName: table, Item: { pk: `BENCH#${id}`, sk: "VM", state: "starting" } } },
            { Put: { TableName: table, Item: { pk: `BENCH#${id}`, sk: "OP", status: "dispatched" } } },
            {
              Put: {
                TableName: table,
                Item: { pk: `BENCH#${id}`, sk: "EV", gsi1pk: `BENCHEV#${opts.tag}`, gsi1sk: id },
              },
            },
          ],
        }),
      );
    }
  };
  await Promise.all(Array.from({ length: opts.inFlight }, (_, w) => worker(w)));
  return n / ((Date.now() - started) / 1000);
}
