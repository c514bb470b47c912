/**
 * Signed envelopes between the control plane and agents: compact JWS (EdDSA) via jose's JWT API, so
 * expiry, issuer and audience checks are jose's. Commands: control plane → agent of one site.
 * Reports (results, inventory): agent → control plane, issued as `usher-agent:<site>`.
 */
import { decodeJwt, errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { AgentCommand, AgentReport, AgentTask } from "../contracts/messages.ts";
import { ErrorCode, SignatureError } from "../errors.ts";
import type { SigningKey } from "./keys.ts";

export const CONTROL_PLANE_ISSUER = "usher-control-plane";
export const agentIssuer = (site: string) => `usher-agent:${site}`;

/** Signs a command for the agent of `cmd.site`; it expires at the operation's deadline. */
export async function signCommand(cmd: AgentCommand, signer: SigningKey): Promise<string> {
  return new SignJWT({ cmd })
    .setProtectedHeader({ alg: "EdDSA", kid: signer.kid, typ: "usher-command+jwt" })
    .setIssuer(CONTROL_PLANE_ISSUER)
    .setAudience(agentIssuer(cmd.site))
    .setSubject(cmd.hostId)
    .setJti(cmd.opId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.parse(cmd.deadline) / 1000))
    .sign(signer.key);
}

/** Verifies a command for this agent's site: refuses unsigned, tampered, expired and foreign-site commands. */
export async function verifyCommand(
  token: string,
  controlPlaneKey: CryptoKey,
  site: string,
): Promise<AgentCommand> {
  const payload = await verifyOrThrow(token, controlPlaneKey, CONTROL_PLANE_ISSUER, agentIssuer(site));
  return checkCommand(payload, site);
}

function checkCommand(payload: Record<string, unknown>, site: string): AgentCommand {
  const parsed = AgentCommand.safeParse(payload.cmd);
  if (!parsed.success) throw new SignatureError(ErrorCode.commandRejected, "command payload is malformed");
  if (parsed.data.site !== site || payload.sub !== parsed.data.hostId || payload.jti !== parsed.data.opId) {
    throw new SignatureError(ErrorCode.commandRejected, "command is for another site or host");
  }
  return parsed.data;
}

/** Signs a task (a plugin to run on premises, a host to fence) for the agent of `task.site`. */
export async function signTask(task: AgentTask, signer: SigningKey): Promise<string> {
  return new SignJWT({ task })
    .setProtectedHeader({ alg: "EdDSA", kid: signer.kid, typ: "usher-task+jwt" })
    .setIssuer(CONTROL_PLANE_ISSUER)
    .setAudience(agentIssuer(task.site))
    .setSubject(task.hostId ?? task.site)
    .setJti(task.taskId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.parse(task.deadline) / 1000))
    .sign(signer.key);
}

/**
 * Verifies a message on an agent's queue, which holds both commands and tasks: the signature, issuer,
 * audience (this site) and expiry, then the payload against its contract.
 */
export async function verifyAgentMessage(
  token: string,
  controlPlaneKey: CryptoKey,
  site: string,
): Promise<{ kind: "command"; cmd: AgentCommand } | { kind: "task"; task: AgentTask }> {
  const payload = await verifyOrThrow(token, controlPlaneKey, CONTROL_PLANE_ISSUER, agentIssuer(site));
  if (payload.cmd === undefined && payload.task !== undefined) {
    const parsed = AgentTask.safeParse(payload.task);
    if (!parsed.success) throw new SignatureError(ErrorCode.commandRejected, "task payload is malformed");
    const t = parsed.data;
    if (t.site !== site || payload.sub !== (t.hostId ?? t.site) || payload.jti !== t.taskId)
      throw new SignatureError(ErrorCode.commandRejected, "task is for another site or host");
    return { kind: "task", task: t };
  }
  return { kind: "command", cmd: checkCommand(payload, site) };
}

/**
 * Signs an agent report (result or inventory) as the agent of `site`. Reports live for a day, so a
 * results consumer that was down or backlogged (or a DLQ redrive) still accepts them; replaying one
 * is harmless, since a finished operation ignores further results.
 */
export async function signReport(report: AgentReport, site: string, signer: SigningKey): Promise<string> {
  return new SignJWT({ report })
    .setProtectedHeader({ alg: "EdDSA", kid: signer.kid, typ: "usher-report+jwt" })
    .setIssuer(agentIssuer(site))
    .setAudience(CONTROL_PLANE_ISSUER)
    .setIssuedAt()
    .setExpirationTime("24h")
    .sign(signer.key);
}

/**
 * Verifies a report against the key of the site it claims to come from, and checks that the report
 * speaks for that same site. Returns the verified site and report.
 */
export async function verifyReport(
  token: string,
  agentKeyForSite: (site: string) => CryptoKey | undefined,
): Promise<{ site: string; report: AgentReport }> {
  let iss: string | undefined;
  try {
    iss = decodeJwt(token).iss;
  } catch (cause) {
    throw new SignatureError(ErrorCode.reportRejected, "report is not a JWS", { cause });
  }
  const site = iss?.startsWith("usher-agent:") ? iss.slice("usher-agent:".length) : undefined;
  const key = site ? agentKeyForSite(site) : undefined;
  if (!site || !key)
    throw new SignatureError(ErrorCode.reportRejected, `report from unknown issuer ${iss ?? "(none)"}`);
  const payload = await verifyOrThrow(
    token,
    key,
    agentIssuer(site),
    CONTROL_PLANE_ISSUER,
    ErrorCode.reportRejected,
  );
  const parsed = AgentReport.safeParse(payload.report);
  if (!parsed.success) throw new SignatureError(ErrorCode.reportRejected, "report payload is malformed");
  if (parsed.data.site !== site)
    throw new SignatureError(ErrorCode.reportRejected, "report speaks for another site");
  return { site, report: parsed.data };
}

async function verifyOrThrow(
  token: string,
  key: CryptoKey,
  issuer: string,
  audience: string,
  code: typeof ErrorCode.commandRejected | typeof ErrorCode.reportRejected = ErrorCode.commandRejected,
) {
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: ["EdDSA"],
      issuer,
      audience,
      requiredClaims: ["exp"],
    });
    return payload;
  } catch (cause) {
    const reason =
      cause instanceof joseErrors.JWTExpired
        ? "expired"
        : cause instanceof joseErrors.JWTClaimValidationFailed
          ? `claim ${cause.claim} rejected`
          : cause instanceof joseErrors.JWSSignatureVerificationFailed
            ? "bad signature"
            : "not a valid signed message";
    throw new SignatureError(code, `signed message refused: ${reason}`, { cause, details: { reason } });
  }
}
