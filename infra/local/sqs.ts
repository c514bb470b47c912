/**
 * The fauxqs SQS emulator as a child process (see fauxqs-server.ts), listening on 127.0.0.1 and
 * ended by pid. In memory only: a restart starts with no queues (ensureResources recreates them).
 */
import { fileURLToPath } from "node:url";
import { ListQueuesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { type LineSink, spawnChild, waitUntil } from "./child.ts";

export type SqsEmulator = {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
};

export type SqsEmulatorOptions = {
  /** Port to listen on; a free one (chosen by the OS, race-free) when absent. */
  port?: number;
  /** Where its output lines go. */
  sink?: LineSink;
  startTimeoutMs?: number;
};

const SERVER = fileURLToPath(new URL("./fauxqs-server.ts", import.meta.url));

/** Client settings for the emulator: fixed dummy credentials, no retries. */
export function localSqsClient(endpoint: string): SQSClient {
  return new SQSClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: 1,
  });
}

/** Starts fauxqs and resolves once it answers ListQueues. */
export async function startSqsEmulator(opts: SqsEmulatorOptions = {}): Promise<SqsEmulator> {
  let port: number | undefined;
  const child = spawnChild({
    name: "sqs",
    command: process.execPath,
    args: [SERVER],
    env: { ...process.env, FAUXQS_PORT: String(opts.port ?? 0), FAUXQS_BIND: "127.0.0.1" },
    sink: (source, line) => {
      if (port === undefined && line.includes('"fauxqs listening"')) {
        try {
          port = (JSON.parse(line) as { port?: number }).port;
        } catch {
          // not our line after all
        }
      }
      opts.sink?.(source, line);
    },
  });
  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  let client: SQSClient | undefined;
  try {
    await waitUntil("fauxqs to listen", async () => port !== undefined, { child, timeoutMs, intervalMs: 50 });
    const endpoint = `http://127.0.0.1:${port}`;
    client = localSqsClient(endpoint);
    const c = client;
    await waitUntil(
      `fauxqs on ${endpoint}`,
      async () => {
        await c.send(new ListQueuesCommand({}));
        return true;
      },
      { child, timeoutMs },
    );
    return { endpoint, port: port!, pid: child.pid, stop: () => child.stop() };
  } catch (error) {
    await child.stop();
    throw error;
  } finally {
    client?.destroy();
  }
}
