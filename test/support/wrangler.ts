/**
 * `wrangler dev` as a test fixture: the API's Worker entry (functions/api/worker.ts) served by workerd
 * on 127.0.0.1, its bindings taken from an `.env` file written to a temp dir. Wrangler and the workerd
 * processes it spawns share one process group, which stop() ends by pid.
 *
 *   const w = await startWranglerDev({ env: { ...t.stack.env, AWS_ACCESS_KEY_ID: "local", ... } });
 *   afterAll(() => w.stop());
 *   await fetch(`${w.url}/v1/health`);
 */
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort, groupAlive, spawnChild } from "../../infra/local/child.ts";

export type WranglerDevOptions = {
  /** Worker bindings (vars and secrets), written to the `--env-file`. */
  env: Record<string, string>;
  /** wrangler config, relative to the repository root. Default infra/wrangler.toml. */
  config?: string;
  /** How long to wait for `GET /v1/health` to answer 200. Default 60 s. */
  readyTimeoutMs?: number;
};

export type WranglerDev = {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Pid of wrangler, leader of the process group. */
  readonly pid: number;
  /** Every output line of wrangler and workerd so far. */
  readonly logs: string[];
  /** Pids of the workerd processes in wrangler's group right now. */
  workerdPids(): number[];
  /** Ends the process group (SIGTERM, SIGKILL after 5 s), waits until it is empty, removes the temp dir. Safe twice. */
  stop(): Promise<void>;
};

const ROOT = resolve(import.meta.dirname, "../..");
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");

/** Starts `wrangler dev --local` and waits until the Worker answers `GET /v1/health` with 200. */
export async function startWranglerDev(opts: WranglerDevOptions): Promise<WranglerDev> {
  const envText = dotenv(opts.env);
  const dir = await mkdtemp(join(tmpdir(), "usher-wrangler-"));
  const envFile = join(dir, ".env");
  await writeFile(envFile, envText, { mode: 0o600 });
  const [port, inspectorPort] = await Promise.all([freePort(), freePort()]);
  const url = `http://127.0.0.1:${port}`;

  const logs: string[] = [];
  const echo = process.env.USHER_TEST_LOGS === "1";
  const child = spawnChild({
    name: "wrangler",
    command: process.execPath,
    args: [
      WRANGLER,
      "dev",
      "--config",
      opts.config ?? "infra/wrangler.toml",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(inspectorPort),
      "--env-file",
      envFile,
      "--persist-to",
      join(dir, "state"),
      "--local",
      "--show-interactive-dev-session=false",
    ],
    cwd: ROOT,
    env: wranglerProcessEnv(dir),
    sink: (source, line) => {
      logs.push(line);
      if (echo) process.stderr.write(`${source.padEnd(14)}| ${line}\n`);
    },
  });

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      try {
        await child.stop();
        // The leader's exit does not wait for workerd: wait until nothing is left in the group.
        const deadline = Date.now() + 10_000;
        while (groupAlive(child.pid) && Date.now() < deadline) await sleep(100);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    })();
    return stopping;
  };

  const readyTimeoutMs = opts.readyTimeoutMs ?? 60_000;
  const deadline = Date.now() + readyTimeoutMs;
  let last = "no answer yet";
  for (;;) {
    if (!child.running()) {
      const info = await child.exited;
      await stop();
      throw new Error(
        `wrangler dev exited (code ${info.code}, signal ${info.signal}) before it was ready:\n${logs.join("\n")}`,
      );
    }
    try {
      const res = await fetch(`${url}/v1/health`, { signal: AbortSignal.timeout(5_000) });
      last = `HTTP ${res.status} ${(await res.text()).slice(0, 200)}`;
      if (res.status === 200) break;
    } catch (error) {
      last = String(error);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `wrangler dev not ready after ${readyTimeoutMs} ms (last: ${last}); output:\n${logs.join("\n")}`,
      );
    }
    await sleep(250);
  }

  return { url, pid: child.pid, logs, workerdPids: () => groupMembers(child.pid, "workerd"), stop };
}

/**
 * The `.env` text. Wrangler parses it with dotenv and then expands `$VAR`: values go in single quotes
 * (taken literally by dotenv) with `$` escaped (`\$` is turned back into `$` after expansion).
 */
function dotenv(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([key, value]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`env file: bad variable name ${key}`);
      if (/['\r\n]/.test(value)) throw new Error(`env file: ${key} holds a quote or a line break`);
      return `${key}='${value.replaceAll("$", "\\$")}'\n`;
    })
    .join("");
}

/**
 * Wrangler's own environment. Variables of the process override those of the `.env` file, so the
 * control-plane and AWS variables of the test process are left out: the file is the only source.
 */
function wranglerProcessEnv(dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(USHER_|AWS_)/.test(key)) env[key] = value;
  }
  return {
    ...env,
    CI: "1",
    WRANGLER_SEND_METRICS: "false",
    // Debug logs in the temp dir rather than ~/.wrangler/logs.
    WRANGLER_LOG_PATH: join(dir, "logs"),
  };
}

/** Pids of live (not zombie) processes in process group `pgid` whose command name is `comm`. */
function groupMembers(pgid: number, comm: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid pgrp …; comm may hold spaces, so split after its closing parenthesis.
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (name === comm && state !== "Z" && Number(pgrp) === pgid) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

/** Whether `pid` is a running (not zombie) workerd process. */
export function isRunningWorkerd(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    return name === "workerd" && stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
