/**
 * The API's edge: authentication, validation, problem+json and the OpenAPI document. These requests
 * are refused before any state is touched, so the clients inside `deps` point at a closed port and
 * are never called (a request that reached them would fail loudly, not pass).
 */
import { exportJWK, generateKeyPair, type JWK, SignJWT, UnsecuredJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { createTokenVerifier } from "../../shared/auth/tokens.ts";
import { silentLogger } from "../../shared/log.ts";
import { Plugins } from "../../shared/plugins/host.ts";
import { QueueClient } from "../../shared/queue/sqs.ts";
import { DEFAULT_SERVICE_CONFIG } from "../../shared/services/context.ts";
import { generateEd25519Jwks, importEd25519 } from "../../shared/signing/keys.ts";
import { createDb } from "../../shared/store/client.ts";
import { createApp } from "./app.ts";

const ISS = "https://issuer.test";
const AUD = "usher-test";
let app: ReturnType<typeof createApp>;
let key: CryptoKey;
let otherKey: CryptoKey;

async function token(
  opts: {
    iss?: string;
    aud?: string;
    exp?: number | null;
    key?: CryptoKey;
    claims?: Record<string, unknown>;
  } = {},
) {
  const jwt = new SignJWT({ project: "p1", roles: ["user"], ...opts.claims })
    .setProtectedHeader({ alg: "ES256", kid: "k1" })
    .setSubject("alice")
    .setIssuer(opts.iss ?? ISS)
    .setAudience(opts.aud ?? AUD)
    .setIssuedAt();
  if (opts.exp !== null) jwt.setExpirationTime(opts.exp ?? "5m");
  return jwt.sign(opts.key ?? key);
}

beforeAll(async () => {
  const pair = await generateKeyPair("ES256", { extractable: true });
  key = pair.privateKey;
  otherKey = (await generateKeyPair("ES256")).privateKey;
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256" };
  const closed = "http://127.0.0.1:9";
  app = createApp({
    deps: {
      db: createDb({
        table: "usher-test",
        region: "us-east-1",
        endpoint: closed,
        credentials: { accessKeyId: "x", secretAccessKey: "x" },
      }),
      queues: new QueueClient({
        region: "us-east-1",
        endpoint: closed,
        opsQueueUrl: `${closed}/q/ops`,
        agentQueueUrlTemplate: `${closed}/q/{site}`,
      }),
      signer: await importEd25519((await generateEd25519Jwks("cp")).privateJwk),
      agentKey: () => undefined,
      log: silentLogger,
      plugins: new Plugins(),
      now: () => new Date(),
      config: {
        ...DEFAULT_SERVICE_CONFIG,
        defaultSite: "local",
        opTimeoutSeconds: 60,
        idempotencyTtlSeconds: 3600,
      },
    },
    verifyToken: createTokenVerifier({
      issuer: ISS,
      audience: AUD,
      algorithms: ["ES256"],
      jwks: { keys: [jwk] },
    }),
  });
});

const get = (path: string, bearer?: string) =>
  app.request(path, { headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });

describe("authentication", () => {
  const cases: [string, () => Promise<string>][] = [
    [
      "alg none",
      async () =>
        new UnsecuredJWT({ project: "p1", sub: "alice" })
          .setIssuer(ISS)
          .setAudience(AUD)
          .setExpirationTime("5m")
          .encode(),
    ],
    ["wrong issuer", () => token({ iss: "https://evil.test" })],
    ["wrong audience", () => token({ aud: "someone-else" })],
    ["expired", () => token({ exp: Math.floor(Date.now() / 1000) - 120 })],
    ["missing exp", () => token({ exp: null })],
    ["bad signature", () => token({ key: otherKey })],
    ["garbage", async () => "not.a.jwt"],
  ];
  for (const [name, make] of cases) {
    it(`refuses ${name} with 401 problem+json`, async () => {
      const res = await get("/v1/vms", await make());
      expect(res.status).toBe(401);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ status: 401, code: "unauthenticated" });
      expect(typeof body.requestId).toBe("string");
    });
  }

  it("refuses a request with no token", async () => {
    const res = await get("/v1/operations/op-1");
    expect(res.status).toBe(401);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/missing bearer token/);
  });

  it("refuses a token without a project claim", async () => {
    const res = await get("/v1/vms", await token({ claims: { project: undefined } }));
    expect(res.status).toBe(401);
  });

  it("lets a user token reach routes but not admin ones", async () => {
    const res = await app.request("/v1/hosts", {
      method: "POST",
      headers: { authorization: `Bearer ${await token()}`, "content-type": "application/json" },
      body: JSON.stringify({
        id: "h1",
        site: "s",
        kind: "sim",
        address: "h1",
        capacity: { vcpus: 1, memoryMiB: 1024 },
      }),
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: "forbidden" });
  });
});

describe("validation", () => {
  const post = async (path: string, body: unknown) =>
    app.request(path, {
      method: "POST",
      headers: { authorization: `Bearer ${await token()}`, "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });

  it.each([
    ["an unknown field", { name: "web-1", vcpus: 1, memoryMiB: 512, colour: "blue" }, /Unrecognized key/],
    ["a missing field", { name: "web-1", vcpus: 1 }, /memoryMiB/],
    ["a bad name", { name: "Web 1!", vcpus: 1, memoryMiB: 512 }, /name/],
    ["zero vCPUs", { name: "web-1", vcpus: 0, memoryMiB: 512 }, /vcpus/],
  ])("refuses %s with 400 problem+json listing the issue", async (_name, body, pattern) => {
    const res = await post("/v1/vms", body);
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const problem = (await res.json()) as { code: string; errors: { path: string; message: string }[] };
    expect(problem.code).toBe("validation_failed");
    expect(JSON.stringify(problem.errors)).toMatch(pattern);
  });

  it("refuses malformed JSON with 400", async () => {
    const res = await post("/v1/vms", "{not json");
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "validation_failed" });
  });

  it("refuses an unknown action", async () => {
    const res = await post("/v1/vms/vm-1/actions", { action: "explode" });
    expect(res.status).toBe(400);
  });

  it("refuses a cluster with neither count nor members", async () => {
    const res = await post("/v1/clusters", { name: "c1" });
    expect(res.status).toBe(400);
  });

  it("answers unknown routes with a 404 problem", async () => {
    const res = await get("/v1/nothing-here", await token());
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
  });
});

describe("public routes", () => {
  it("serves health without auth", async () => {
    const res = await get("/v1/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ok" });
  });

  it("serves an OpenAPI 3.1 document generated from the contracts", async () => {
    const res = await get("/v1/openapi.json");
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, unknown>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toBe("3.1.0");
    for (const p of [
      "/v1/vms",
      "/v1/vms/{id}",
      "/v1/vms/{id}/actions",
      "/v1/clusters",
      "/v1/clusters/{id}/actions",
      "/v1/operations/{id}",
      "/v1/hosts",
      "/v1/hosts/{id}",
    ]) {
      expect(Object.keys(doc.paths)).toContain(p);
    }
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining(["Vm", "Operation", "CreateVm", "Problem", "Host"]),
    );
  });
});
