/**
 * The argument policy, the audit plugin and `GET /v1/events` through the API (`app.request()`), over
 * real DynamoDB Local and fauxqs, with real ES256 tokens. `awaitRequestPlugins` makes the audit
 * record land before each response returns, so the listings after it see it without waiting.
 */
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../functions/api/app.ts";
import { createTokenVerifier } from "../shared/auth/tokens.ts";
import type { Role } from "../shared/contracts/common.ts";
import type { Event, EventList } from "../shared/contracts/events.ts";
import { argumentPolicy } from "../shared/plugins/builtin/arguments.ts";
import { audit } from "../shared/plugins/builtin/audit.ts";
import { createHost } from "../shared/services/hosts.ts";
import { type ServiceBed, startServiceBed } from "./support/services.ts";

const ISS = "https://issuer.test";
const AUD = "usher-test";
let bed: ServiceBed;
let app: ReturnType<typeof createApp>;
let key: CryptoKey;

const token = (project: string, roles: Role[] = ["user"], sub = `${project}-user`) =>
  new SignJWT({ project, roles })
    .setProtectedHeader({ alg: "ES256", kid: "k1" })
    .setSubject(sub)
    .setIssuer(ISS)
    .setAudience(AUD)
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(key);

let userA: string;
let userB: string;
let adminT: string;

beforeAll(async () => {
  bed = await startServiceBed();
  const pair = await generateKeyPair("ES256", { extractable: true });
  key = pair.privateKey;
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256" };
  const deps = bed.deps({
    config: {
      plugins: [
        argumentPolicy({
          rules: [
            {
              defaults: { image: "debian-12" },
              limits: { vcpus: 4, memoryMiB: 8192 },
              allowed: { images: ["debian-12", "ubuntu-24.04"] },
            },
            { scope: { roles: ["admin"] }, limits: { vcpus: 64 }, allowed: { hosts: ["h1"] } },
          ],
        }),
        audit(),
      ],
    },
  });
  for (const id of ["h1", "h2"])
    await createHost(
      deps,
      { actor: "root", requestId: `req-setup-${id}` },
      { id, site: "local", kind: "sim", address: `${id}.sim`, capacity: { vcpus: 8, memoryMiB: 8192 } },
    );
  app = createApp({
    deps,
    verifyToken: createTokenVerifier({
      issuer: ISS,
      audience: AUD,
      algorithms: ["ES256"],
      jwks: { keys: [jwk] },
    }),
    awaitRequestPlugins: true,
  });
  [userA, userB, adminT] = await Promise.all([token("a"), token("b"), token("ops", ["admin"], "root")]);
});
afterAll(() => bed?.stop());

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
type Body = any;

async function call(
  path: string,
  bearer: string | null,
  json?: unknown,
): Promise<{ status: number; body: Body; requestId: string }> {
  const headers: Record<string, string> = {};
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  if (json !== undefined) headers["content-type"] = "application/json";
  const res = await app.request(path, {
    method: json !== undefined ? "POST" : "GET",
    headers,
    ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
  });
  return { status: res.status, body: await res.json(), requestId: res.headers.get("x-request-id") ?? "" };
}

const events = async (query: string, bearer: string) => {
  const res = await call(`/v1/events?${query}`, bearer);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as EventList;
};

/** Every event of a listing, following cursors; checks each page's size and order. */
async function all(query: string, bearer: string, limit: number): Promise<Event[]> {
  const out: Event[] = [];
  let cursor: string | null = null;
  do {
    const page: EventList = await events(
      `${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`,
      bearer,
    );
    expect(page.items.length).toBeLessThanOrEqual(limit);
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return out;
}

describe("argument policy", () => {
  it("vetoes a create over the vCPU limit: 403 vetoed, the reason, the plugin and the field", async () => {
    const res = await call("/v1/vms", userA, { name: "too-big", vcpus: 8, memoryMiB: 1024 });
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({
      code: "vetoed",
      detail: "vcpus 8 is over the limit of 4",
      details: { plugin: "arguments", field: "vcpus", requested: 8, limit: 4 },
    });
    // Nothing was written: the name is still free.
    expect((await call("/v1/vms", userA, { name: "too-big", vcpus: 2, memoryMiB: 1024 })).status).toBe(202);
  });

  it("fills the default image and refuses one that is not allowed", async () => {
    const ok = await call("/v1/vms", userA, { name: "plain", vcpus: 1, memoryMiB: 512 });
    expect(ok.status).toBe(202);
    expect(ok.body.vm.spec).toEqual({ vcpus: 1, memoryMiB: 512, image: "debian-12" });
    const bad = await call("/v1/vms", userA, { name: "win", vcpus: 1, memoryMiB: 512, image: "win11" });
    expect(bad).toMatchObject({ status: 403, body: { code: "vetoed", details: { field: "image" } } });
  });

  it("lets admins go higher but only to allowed target hosts", async () => {
    const vm = await call("/v1/vms", adminT, { name: "big", vcpus: 16, memoryMiB: 1024 });
    expect(vm.status).toBe(202);
    const to = (targetHostId: string) =>
      call(`/v1/vms/${vm.body.vm.id}/actions`, adminT, { action: "migrate", targetHostId });
    expect((await to("h2")).body).toMatchObject({
      code: "vetoed",
      details: { plugin: "arguments", field: "targetHostId", requested: "h2" },
    });
    expect((await to("h1")).status).toBe(202);
  });
});

describe("audit and GET /v1/events", () => {
  it("records a vetoed create as rejected and an accepted one as accepted, with their request ids", async () => {
    const vetoed = await call("/v1/vms", userA, { name: "huge", vcpus: 32, memoryMiB: 1024 });
    const accepted = await call("/v1/vms", userA, { name: "audited", vcpus: 1, memoryMiB: 512 });
    expect([vetoed.status, accepted.status]).toEqual([403, 202]);

    const [rejected] = (await events(`type=api.request&requestId=${vetoed.requestId}`, userA)).items;
    expect(rejected).toMatchObject({
      type: "api.request",
      subject: "PROJ#a",
      project: "a",
      actor: "a-user",
      requestId: vetoed.requestId,
      data: { action: "vm.create", method: "POST", status: 403, outcome: "rejected", code: "vetoed" },
    });
    // The accepted request's audit record and the VM's own event share its request id.
    const mine = await events(`requestId=${accepted.requestId}`, userA);
    expect(mine.items.map((e) => e.type).sort()).toEqual(["api.request", "vm.created"]);
    expect(mine.items.find((e) => e.type === "api.request")?.data).toMatchObject({
      outcome: "accepted",
      status: 202,
    });
    const rejectedOnly = await events("outcome=rejected", userA);
    expect(rejectedOnly.items.length).toBeGreaterThan(0);
    expect(rejectedOnly.items.every((e) => e.data.outcome === "rejected")).toBe(true);
  });

  it("records a request without a valid token under `-`, which only admins read", async () => {
    const res = await call("/v1/vms", "not.a.jwt");
    expect(res.status).toBe(401);
    const [rec] = (await events(`project=-&requestId=${res.requestId}`, adminT)).items;
    expect(rec).toMatchObject({ project: "-", actor: null, data: { status: 401, code: "unauthenticated" } });
    expect((await call("/v1/events?project=-", userA)).status).toBe(403);
    expect((await call("/v1/events", await token("-"))).status).toBe(403);
  });

  it("lists newest first, filters by type, prefix, vmId, opId and time, and pages without gaps", async () => {
    const made = await call("/v1/vms", userB, { name: "listed", vcpus: 1, memoryMiB: 512 });
    const vmId: string = made.body.vm.id;
    const opId: string = made.body.operation.id;
    // A few milliseconds either side, so no event shares `since`'s millisecond (ids order by time).
    await new Promise((r) => setTimeout(r, 5));
    const since = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));
    for (const name of ["l1", "l2", "l3"]) await call("/v1/vms", userB, { name, vcpus: 1, memoryMiB: 512 });

    const everything = (await events("limit=200", userB)).items;
    const ids = everything.map((e) => e.id);
    expect(ids).toEqual([...ids].sort().reverse());

    const paged = await all("type=vm.created", userB, 2);
    expect(paged.map((e) => e.data.name)).toEqual(["l3", "l2", "l1", "listed"]);
    expect(new Set(paged.map((e) => e.id)).size).toBe(paged.length);

    expect((await all("type=vm.", userB, 3)).map((e) => e.type)).toEqual(Array(4).fill("vm.created"));
    expect((await events(`vmId=${vmId}`, userB)).items).toMatchObject([{ type: "vm.created", opId }]);
    expect((await events(`opId=${opId}`, userB)).items.map((e) => e.subject)).toEqual([`VM#${vmId}`]);
    const recent = (await events(`type=vm.created&since=${since}`, userB)).items;
    expect(recent.map((e) => e.data.name)).toEqual(["l3", "l2", "l1"]);
    const older = (await events(`type=vm.created&until=${since}`, userB)).items;
    expect(older.map((e) => e.data.name)).toEqual(["listed"]);
    expect((await call(`/v1/events?since=${since}&until=${since}`, userB)).status).toBe(400);
  });

  it("never shows one project's events to another", async () => {
    const made = await call("/v1/vms", userA, { name: "secret", vcpus: 1, memoryMiB: 512 });
    const vmId: string = made.body.vm.id;
    expect((await events(`vmId=${vmId}`, userA)).items).toHaveLength(1);

    const bSees = await all("", userB, 50);
    expect(bSees.length).toBeGreaterThan(0);
    expect(bSees.every((e) => e.project === "b")).toBe(true);
    expect((await events(`vmId=${vmId}`, userB)).items).toEqual([]);
    expect((await events(`requestId=${made.requestId}`, userB)).items).toEqual([]);
    expect((await events("subject=PROJ%23a", userB)).items).toEqual([]);
    expect((await call("/v1/events?project=a", userB)).status).toBe(403);
    // Admins read any project, and host partitions, which belong to none.
    expect((await events(`project=a&vmId=${vmId}`, adminT)).items).toHaveLength(1);
    expect((await events(`vmId=${vmId}&project=b`, adminT)).items).toEqual([]);
    expect((await events("subject=HOST%23h1", adminT)).items).toMatchObject([
      { type: "host.registered", project: null },
    ]);
    expect((await events("subject=HOST%23h1", userB)).items).toEqual([]);
  });
});

describe("an admin acting on another project", () => {
  const audited = async (requestId: string, bearer: string) =>
    (await events(`type=api.request&requestId=${requestId}`, bearer)).items;

  it("files the record under the project acted on, with the admin as actor", async () => {
    const made = await call("/v1/vms", userA, { name: "watched", vcpus: 1, memoryMiB: 512 });
    const vmId: string = made.body.vm.id;

    const reboot = await call(`/v1/vms/${vmId}/actions`, adminT, { action: "reboot" });
    expect(reboot.status).toBe(202);
    expect(await audited(reboot.requestId, userA)).toMatchObject([
      {
        subject: "PROJ#a",
        project: "a",
        actor: "root",
        data: { action: "vm.reboot", status: 202, outcome: "accepted", actorProject: "ops" },
      },
    ]);
    expect(await audited(reboot.requestId, adminT)).toEqual([]); // not in the admin's own project

    // Reads, `?project=` listings, and refusals decided once the target was known go there too.
    const read = await call(`/v1/vms/${vmId}`, adminT);
    const list = await call("/v1/vms?project=a", adminT);
    const vetoed = await call(`/v1/vms/${vmId}/actions`, adminT, { action: "migrate", targetHostId: "h2" });
    const log = await call("/v1/events?project=a&limit=1", adminT);
    expect([read.status, list.status, vetoed.status, log.status]).toEqual([200, 200, 403, 200]);
    for (const [r, action] of [
      [read, "vm.get"],
      [list, "vm.list"],
      [vetoed, "vm.migrate"],
      [log, "event.list"],
    ] as const)
      expect(await audited(r.requestId, userA), action).toMatchObject([
        { project: "a", actor: "root", data: { action, actorProject: "ops" } },
      ]);

    // The user sees the admin's requests by actor (newest first; earlier tests' come after these).
    const byAdmin = (await events("actor=root", userA)).items;
    expect(byAdmin.slice(0, 5).map((e) => e.requestId)).toEqual(
      [reboot, read, list, vetoed, log].map((r) => r.requestId).reverse(),
    );
  });

  it("keeps requests refused before their target was known in the caller's project", async () => {
    const missing = await call("/v1/vms/vm-nope/actions", adminT, { action: "reboot" });
    expect(missing.status).toBe(404);
    const [own] = await audited(missing.requestId, adminT);
    expect(own).toMatchObject({ project: "ops", actor: "root", data: { status: 404 } });
    expect(own?.data).not.toHaveProperty("actorProject");
    expect(await audited(missing.requestId, userA)).toEqual([]);

    // A user naming another project is refused in their own project, never filed in the other.
    const nosy = await call("/v1/events?project=a", userB);
    expect(nosy.status).toBe(403);
    expect(await audited(nosy.requestId, userB)).toMatchObject([{ project: "b", actor: "b-user" }]);
    expect(await audited(nosy.requestId, userA)).toEqual([]);
  });
});

describe("GET /v1/events by action and actor", () => {
  it("returns only matching records, and pages through sparse matches without gaps", async () => {
    const [alice, bob] = await Promise.all([token("f", ["user"], "f-alice"), token("f", ["user"], "f-bob")]);
    const create = async (bearer: string, name: string) => {
      const res = await call("/v1/vms", bearer, { name, vcpus: 1, memoryMiB: 512 });
      expect(res.status).toBe(202);
      return res;
    };
    const noise = async (n: number) => {
      for (let i = 0; i < n; i++) expect((await call("/v1/vms", alice)).status).toBe(200);
    };
    // Oldest first; noise between the matches, more than a page's reads can skip (limit 1, 5 reads).
    const a1 = await create(alice, "f-a1");
    const b1 = await create(bob, "f-b1");
    await noise(8);
    const a2 = await create(alice, "f-a2");
    await noise(8);
    const b2 = await create(bob, "f-b2");
    const rebootB = await call(`/v1/vms/${b1.body.vm.id}/actions`, bob, { action: "reboot" });
    await noise(3);
    const rebootAdmin = await call(`/v1/vms/${a2.body.vm.id}/actions`, adminT, { action: "reboot" });
    const rebootA = await call(`/v1/vms/${a1.body.vm.id}/actions`, alice, { action: "reboot" });
    expect([rebootB.status, rebootAdmin.status, rebootA.status]).toEqual([202, 202, 202]);
    const ids = (...rs: { requestId: string }[]) => rs.map((r) => r.requestId).reverse();

    for (const limit of [1, 2, 50]) {
      const creates = await all("action=vm.create", alice, limit);
      expect(creates.map((e) => e.requestId)).toEqual(ids(a1, b1, a2, b2));
      expect(creates.every((e) => e.type === "api.request" && e.data.action === "vm.create")).toBe(true);

      const bobs = await all("action=vm.create&actor=f-bob", alice, limit);
      expect(bobs.map((e) => e.requestId)).toEqual(ids(b1, b2));

      const reboots = await all("action=vm.reboot", bob, limit);
      expect(reboots.map((e) => [e.requestId, e.actor])).toEqual([
        [rebootA.requestId, "f-alice"],
        [rebootAdmin.requestId, "root"],
        [rebootB.requestId, "f-bob"],
      ]);
    }
    // `actor` holds for every event the subject caused, not only its requests.
    const bobsVms = await all("actor=f-bob&type=vm.created", alice, 1);
    expect(bobsVms.map((e) => e.data.name)).toEqual(["f-b2", "f-b1"]);
    expect((await all("actor=f-bob", alice, 3)).every((e) => e.actor === "f-bob")).toBe(true);
    expect((await events("action=vm.nothing", alice)).items).toEqual([]);
    // Project scoping is unchanged: another project sees none of it.
    expect((await events("actor=f-bob", userA)).items).toEqual([]);
  });
});
