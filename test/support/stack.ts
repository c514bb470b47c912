/**
 * Test harness over the local stack: a fresh temp dataDir, free ports, fast simulated hosts, a short
 * sweep, and every child's log lines captured (parsed) for assertions. Set USHER_TEST_LOGS=1 to also
 * echo them on stderr.
 *
 *   const t = await startTestStack();
 *   afterAll(() => t.stop());
 *   const res = await t.api("/v1/vms", { method: "POST", json: { name: "a", vcpus: 1, memoryMiB: 512 } });
 *   const op = await t.waitForOperation(res.body.operation.id);
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MintToken } from "../../infra/local/keys.ts";
import { type Stack, type StackOptions, type StackSite, startStack } from "../../infra/local/stack.ts";
import { TERMINAL_OP_STATUSES } from "../../shared/contracts/common.ts";
import type { Operation } from "../../shared/contracts/vm.ts";

/** One captured log line: the child's JSON object (or `{ msg: <raw line> }`), plus which child wrote it. */
export type LogLine = Record<string, unknown> & { source: string; msg?: unknown; requestId?: unknown };

export type TestStackOptions = Partial<
  Omit<StackOptions, "dataDir" | "logSink" | "apiPort" | "dynamodbPort" | "sqsPort">
>;

export type ApiInit = Omit<RequestInit, "body"> & {
  /** Bearer token; the admin token when absent, none when `null`. */
  token?: string | null;
  /** Sent as JSON (sets content-type; the method defaults to POST). */
  json?: unknown;
  body?: RequestInit["body"];
};

// biome-ignore lint/suspicious/noExplicitAny: test ergonomics; callers pass a type where it matters
export type ApiResponse<T = any> = { status: number; body: T; headers: Headers };

export type TestStack = {
  readonly apiUrl: string;
  readonly adminToken: string;
  readonly dataDir: string;
  /** The running stack (replaced by restart()). */
  readonly stack: Stack;
  /** Pid by process name (see Stack.pids). */
  readonly pids: Record<string, number>;
  mintToken: MintToken;
  userToken(project: string, sub?: string): Promise<string>;
  /** Every log line of every child since start (across restarts). */
  logs: LogLine[];
  /** Lines that carry this requestId, in order. */
  logsFor(requestId: string): LogLine[];
  // biome-ignore lint/suspicious/noExplicitAny: as ApiResponse
  api<T = any>(path: string, init?: ApiInit): Promise<ApiResponse<T>>;
  /** Long-polls the operation until it is succeeded, failed or cancelled; returns it. */
  waitForOperation(opId: string, token?: string, timeoutMs?: number): Promise<Operation>;
  /** Stops the stack and starts it again on the same dataDir and ports. */
  restart(): Promise<void>;
  /** Stops every child and removes the temp dir. Safe twice. */
  stop(): Promise<void>;
};

export const DEFAULT_TEST_SITES: StackSite[] = [
  {
    name: "local",
    hosts: [
      { id: "host-1", vcpus: 16, memoryMiB: 64 * 1024 },
      { id: "host-2", vcpus: 16, memoryMiB: 64 * 1024 },
      { id: "host-3", vcpus: 32, memoryMiB: 128 * 1024 },
    ],
  },
];

export async function startTestStack(opts: TestStackOptions = {}): Promise<TestStack> {
  const dataDir = await mkdtemp(join(tmpdir(), "usher-test-"));
  const logs: LogLine[] = [];
  const echo = process.env.USHER_TEST_LOGS === "1";
  const logSink = (source: string, line: string) => {
    if (echo) process.stderr.write(`${source.padEnd(14)}| ${line}\n`);
    logs.push(parseLine(source, line));
  };
  const options: StackOptions = {
    sites: DEFAULT_TEST_SITES,
    delayScale: 0.05,
    sweepIntervalSeconds: 1,
    // Persisted (in the temp dir) so restart() keeps state, as `npm start` does.
    persist: true,
    agentPollWaitSeconds: 5,
    agentInventoryIntervalSeconds: 5,
    ...opts,
    dataDir,
    logSink,
  };

  let stack: Stack;
  try {
    stack = await startStack(options);
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  // Same ports on restart: URLs and queue URLs the test holds stay valid.
  options.apiPort = stack.ports.api;
  options.dynamodbPort = stack.ports.dynamodb;
  options.sqsPort = stack.ports.sqs;

  const api = async <T>(path: string, init: ApiInit = {}): Promise<ApiResponse<T>> => {
    const { token, json, ...rest } = init;
    const headers = new Headers(rest.headers);
    const bearer = token === undefined ? stack.adminToken : token;
    if (bearer !== null) headers.set("authorization", `Bearer ${bearer}`);
    if (json !== undefined) headers.set("content-type", "application/json");
    const res = await fetch(`${stack.apiUrl}${path}`, {
      ...rest,
      method: rest.method ?? (json !== undefined ? "POST" : "GET"),
      headers,
      body: json !== undefined ? JSON.stringify(json) : rest.body,
    });
    const text = await res.text();
    const isJson = /[/+]json\b/.test(res.headers.get("content-type") ?? "");
    const body = (text === "" ? undefined : isJson ? JSON.parse(text) : text) as T;
    return { status: res.status, body, headers: res.headers };
  };

  let stopped: Promise<void> | undefined;
  const t: TestStack = {
    get apiUrl() {
      return stack.apiUrl;
    },
    get adminToken() {
      return stack.adminToken;
    },
    get stack() {
      return stack;
    },
    get pids() {
      return stack.pids;
    },
    dataDir,
    mintToken: (input) => stack.mintToken(input),
    userToken: (project, sub) => stack.userToken(project, sub),
    logs,
    logsFor: (requestId) => logs.filter((l) => l.requestId === requestId),
    api,
    async waitForOperation(opId, token, timeoutMs = 90_000) {
      const deadline = Date.now() + timeoutMs;
      let last: Operation | undefined;
      while (Date.now() < deadline) {
        const res = await api<Operation>(`/v1/operations/${encodeURIComponent(opId)}?waitSeconds=20`, {
          token,
        });
        if (res.status !== 200) {
          throw new Error(`GET /v1/operations/${opId}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
        }
        last = res.body;
        if (TERMINAL_OP_STATUSES.includes(last.status)) return last;
      }
      throw new Error(`operation ${opId} not terminal after ${timeoutMs} ms (last status ${last?.status})`);
    },
    async restart() {
      await stack.stop();
      stack = await startStack(options);
    },
    stop() {
      stopped ??= (async () => {
        try {
          await stack.stop();
        } finally {
          await rm(dataDir, { recursive: true, force: true });
        }
      })();
      return stopped;
    },
  };
  return t;
}

function parseLine(source: string, line: string): LogLine {
  if (line.startsWith("{")) {
    try {
      const parsed = JSON.parse(line) as unknown;
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed))
        return { ...(parsed as object), source };
    } catch {
      // not JSON after all: keep it raw
    }
  }
  return { source, msg: line, raw: true };
}
