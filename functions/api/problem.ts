/** One place maps errors to HTTP: RFC 9457 problem+json with Usher's stable `code`. */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import type { Problem } from "../../shared/contracts/common.ts";
import { ErrorCode, UsherError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";

const STATUS: Record<string, ContentfulStatusCode> = {
  [ErrorCode.validation]: 400,
  [ErrorCode.unauthenticated]: 401,
  [ErrorCode.forbidden]: 403,
  [ErrorCode.notFound]: 404,
  [ErrorCode.conflict]: 409,
  [ErrorCode.nameTaken]: 409,
  [ErrorCode.idempotencyMismatch]: 409,
  [ErrorCode.idempotencyInFlight]: 409,
  [ErrorCode.invalidState]: 409,
  [ErrorCode.noCapacity]: 409,
  [ErrorCode.queueSendFailed]: 503,
  [ErrorCode.vetoed]: 403,
  [ErrorCode.pluginFailed]: 503,
  [ErrorCode.quotaExceeded]: 409,
};

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export function problemResponse(
  c: Context,
  status: ContentfulStatusCode,
  code: string,
  detail: string,
  extra: Partial<Problem> = {},
): Response {
  const body: Problem = {
    type: `https://usher.dev/problems/${code.replaceAll("_", "-")}`,
    title: TITLES[status] ?? "Error",
    status,
    detail,
    instance: c.req.path,
    code,
    requestId: c.get("requestId" as never) as string | undefined,
    ...extra,
  };
  const headers: Record<string, string> = { "content-type": "application/problem+json" };
  if (status === 401) headers["www-authenticate"] = 'Bearer realm="usher"';
  return new Response(JSON.stringify(body), { status, headers });
}

/** `app.onError`: every thrown error becomes a problem response; unknown ones are logged and hidden. */
export function onError(log: Logger) {
  return (err: Error, c: Context): Response => {
    if (err instanceof UsherError) {
      const status = STATUS[err.code] ?? 500;
      return problemResponse(
        c,
        status,
        err.code,
        err.message,
        err.details ? ({ ...{ details: err.details } } as Partial<Problem>) : {},
      );
    }
    if (err instanceof HTTPException) {
      const status = err.status as ContentfulStatusCode;
      const code =
        status === 401
          ? ErrorCode.unauthenticated
          : status >= 500
            ? ErrorCode.internal
            : ErrorCode.validation;
      return problemResponse(c, status, code, err.message || TITLES[status] || "error");
    }
    log.error("unhandled error", { err, requestId: c.get("requestId" as never), path: c.req.path });
    return problemResponse(
      c,
      500,
      ErrorCode.internal,
      "internal error; quote the requestId when reporting it",
    );
  };
}

/** The zod-openapi validation hook: invalid input → 400 problem with every issue listed. */
export function validationHook(
  result: { success: true } | { success: false; error: z.ZodError; target?: string },
  c: Context,
) {
  if (result.success) return;
  const errors = result.error.issues.map((i) => ({ path: i.path.join(".") || "(root)", message: i.message }));
  return problemResponse(
    c,
    400,
    ErrorCode.validation,
    `invalid ${"target" in result ? result.target : "request"}: ${errors[0]?.path}: ${errors[0]?.message}`,
    { errors },
  );
}
