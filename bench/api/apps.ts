/**
 * Section 4's two contenders, both answering `POST /v1/vms` in this process through `app.request()`:
 * Usher's own app (`createApp`) behind a real ES256 bearer token, and a bare Hono route that performs
 * the same DynamoDB transaction and the same SQS send with the same clients, and nothing else.
 */
import { SendMessageBatchCommand } from "@aws-sdk/client-sqs";
import { TransactWriteCommand } from "@aws-sdk/lib-dynamodb";
import { Hono } from "hono";
import { createApp } from "../../functions/api/app.ts";
import type { Principal } from "../../shared/auth/principal.ts";
import type { TokenVerifier } from "../../shared/auth/tokens.ts";
import type { CreateVm } from "../../shared/contracts/vm.ts";
import { newId } from "../../shared/ids.ts";
import { createLogger } from "../../shared/log.ts";
import { QueueClient } from "../../shared/queue/sqs.ts";
import type { Deps } from "../../shared/services/context.ts";
import { eventItem } from "../../shared/services/events.ts";
import { newVmItems } from "../../shared/services/vms.ts";
import type { Db } from "../../shared/store/client.ts";
import { opView, vmView } from "../../shared/store/items.ts";
import { keys } from "../../shared/store/keys.ts";

/** Who both sides act as: the bare route assumes it, Usher's side proves it with a token. */
export const BENCH_PRINCIPAL: Principal = { subject: "bench-user", project: "bench", roles: ["user"] };

/** The requests' body: a small VM with a name of the same length on both sides (unique per request). */
export function createVmBody(name: string): CreateVm {
  return { name, vcpus: 2, memoryMiB: 2048, image: "debian-12", labels: { role: "bench" } };
}

/** Something that answers a `Request`, as both Hono apps do. */
export type Handler = { request(path: string, init: RequestInit): Response | Promise<Response> };

/**
 * Usher's app over `deps`, as the API entries build it. Its logger logs at `info` (the deployed
 * default: one line per request) into a sink that drops the line after it is formatted, so the
 * formatting is paid but the terminal is not.
 */
export function usherApp(deps: Deps, verifyToken: TokenVerifier): Handler {
  const log = createLogger({ component: "api" }, { level: "info", sink: () => {} });
  return createApp({ deps: { ...deps, log }, verifyToken });
}

/**
 * The baseline: no middleware, no token, no validation, no plugins, no idempotency, no logging. It
 * reads the body as is, builds the very items `createVm` writes (name reservation, VM, operation,
 * event) with Usher's own item builders, and sends them and the ops message with the SDK clients
 * Usher's side uses, so the two sides differ only in what Usher does around the I/O.
 */
export function bareApp(deps: Deps): Handler {
  const app = new Hono();
  app.post("/v1/vms", async (c) => {
    const { name, labels, site, leaseSeconds: _, placement, ...spec } = await c.req.json<CreateVm>();
    const requestId = newId("req");
    const ctx = { principal: BENCH_PRINCIPAL, requestId };
    const { vm, op, items } = newVmItems(deps, ctx, {
      name,
      site: site ?? deps.config.defaultSite,
      spec,
      labels,
      placement,
      args: {},
    });
    const event = eventItem(deps, {
      subjectPk: keys.vm(vm.id).pk,
      project: vm.project,
      type: "vm.created",
      requestId,
      opId: op.id,
      actor: ctx.principal.subject,
      data: { name, spec },
    });
    await deps.db.doc.send(new TransactWriteCommand({ TransactItems: [...items, event] }));
    await deps.queues.sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: deps.queues.config.opsQueueUrl,
        Entries: [{ Id: "0", MessageBody: JSON.stringify({ opId: op.id, requestId }) }],
      }),
    );
    return c.json({ vm: vmView(vm), operation: opView(op) }, 202);
  });
  return app;
}

/**
 * `deps` whose DynamoDB document client and SQS client answer every call at once, sending nothing
 * (a transaction that commits, a batch all sent). Not a stand-in for the real services: it takes their
 * cost out, so what is left of a request is the API's own work, on both sides alike.
 */
export function withoutIo(deps: Deps): Deps {
  const doc = { send: async () => ({}) } as unknown as Db["doc"];
  const queues = new QueueClient(deps.queues.config);
  (queues.sqs as unknown as { send: () => Promise<unknown> }).send = async () => ({
    Successful: [{ Id: "0" }],
  });
  return { ...deps, db: { ...deps.db, doc }, queues };
}
