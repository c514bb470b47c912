import { SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import type { AgentCommand, AgentResult } from "../contracts/messages.ts";
import { signCommand, signReport, verifyCommand, verifyReport } from "./envelopes.ts";
import { generateEd25519Jwks, importEd25519, type SigningKey } from "./keys.ts";

let cp: SigningKey;
let cpPublic: CryptoKey;
let agent: SigningKey;
let agentPublic: CryptoKey;
let stranger: SigningKey;

const cmd = (over: Partial<AgentCommand> = {}): AgentCommand => ({
  opId: "op-1",
  requestId: "req-1",
  action: "start",
  site: "east",
  hostId: "h1",
  vmId: "vm-1",
  vmName: "web-1",
  spec: { vcpus: 1, memoryMiB: 512 },
  deadline: new Date(Date.now() + 60_000).toISOString(),
  attempt: 1,
  ...over,
});

beforeAll(async () => {
  const a = await generateEd25519Jwks("cp");
  const b = await generateEd25519Jwks("agent-east");
  const c = await generateEd25519Jwks("stranger");
  cp = await importEd25519(a.privateJwk);
  cpPublic = (await importEd25519(a.publicJwk)).key;
  agent = await importEd25519(b.privateJwk);
  agentPublic = (await importEd25519(b.publicJwk)).key;
  stranger = await importEd25519(c.privateJwk);
});

describe("commands", () => {
  it("round-trips a signed command for the agent's own site", async () => {
    const c = cmd();
    expect(await verifyCommand(await signCommand(c, cp), cpPublic, "east")).toEqual(c);
  });

  it("refuses a command for another site", async () => {
    await expect(verifyCommand(await signCommand(cmd(), cp), cpPublic, "west")).rejects.toMatchObject({
      code: "command_rejected",
    });
  });

  it("refuses an expired command", async () => {
    const token = await signCommand(cmd({ deadline: new Date(Date.now() - 120_000).toISOString() }), cp);
    await expect(verifyCommand(token, cpPublic, "east")).rejects.toThrow(/expired/);
  });

  it("refuses a command signed by another key, unsigned, or tampered with", async () => {
    await expect(verifyCommand(await signCommand(cmd(), stranger), cpPublic, "east")).rejects.toThrow(
      /bad signature/,
    );
    await expect(verifyCommand(JSON.stringify(cmd()), cpPublic, "east")).rejects.toMatchObject({
      code: "command_rejected",
    });
    const [h, , s] = (await signCommand(cmd(), cp)).split(".");
    const forged = Buffer.from(
      JSON.stringify({
        cmd: cmd({ action: "destroy" }),
        iss: "usher-control-plane",
        aud: "usher-agent:east",
        exp: 2e9,
      }),
    ).toString("base64url");
    await expect(verifyCommand(`${h}.${forged}.${s}`, cpPublic, "east")).rejects.toThrow(/bad signature/);
  });

  it("refuses a command whose host does not match its subject", async () => {
    const token = await new SignJWT({ cmd: cmd() })
      .setProtectedHeader({ alg: "EdDSA" })
      .setIssuer("usher-control-plane")
      .setAudience("usher-agent:east")
      .setSubject("h2")
      .setJti("op-1")
      .setExpirationTime("1m")
      .sign(cp.key);
    await expect(verifyCommand(token, cpPublic, "east")).rejects.toThrow(/another site or host/);
  });
});

describe("reports", () => {
  const result: AgentResult = {
    type: "result",
    opId: "op-1",
    requestId: "req-1",
    site: "east",
    hostId: "h1",
    vmId: "vm-1",
    status: "succeeded",
    at: new Date().toISOString(),
  };
  const keyFor = (site: string) => (site === "east" ? agentPublic : undefined);

  it("verifies a report with the key of the site it comes from", async () => {
    const out = await verifyReport(await signReport(result, "east", agent), keyFor);
    expect(out).toEqual({ site: "east", report: result });
  });

  it("refuses reports from unknown sites, wrong keys, or speaking for another site", async () => {
    await expect(verifyReport(await signReport(result, "west", agent), keyFor)).rejects.toThrow(
      /unknown issuer/,
    );
    await expect(verifyReport(await signReport(result, "east", stranger), keyFor)).rejects.toThrow(
      /bad signature/,
    );
    await expect(
      verifyReport(await signReport({ ...result, site: "west" }, "east", agent), keyFor),
    ).rejects.toThrow(/another site/);
    await expect(verifyReport("garbage", keyFor)).rejects.toMatchObject({ code: "report_rejected" });
  });
});
