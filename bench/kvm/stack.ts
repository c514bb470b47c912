/**
 * The KVM test bed (two libvirt hosts, each with its own sshd, in mount namespaces on loopback) and
 * the whole local stack over it (DynamoDB Local, fauxqs, API, consumers, one bridge agent driving the
 * hosts over SSH), as test/kvm/stack.test.ts runs them, with DynamoDB in memory and logs at warn.
 * `stop()` ends everything by pid (the stack's children, then the bed).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Stack, startStack } from "../../infra/local/stack.ts";
import { TERMINAL_OP_STATUSES } from "../../shared/contracts/common.ts";
import type { Operation } from "../../shared/contracts/vm.ts";
import { stackHosts, startKvmTestbed, type Testbed } from "../../test/kvm/testbed.ts";

export const SITE = "lab";

export type KvmStack = {
  bed: Testbed;
  stack: Stack;
  /** A user token for the bench's project. */
  token: string;
  /** JSON request to the API; throws unless the status is `expect`. */
  api<T>(path: string, init: { method?: string; json?: unknown; expect: number }): Promise<T>;
  /** Long-polls the operation (`waitSeconds`) until it is terminal; returns it. */
  waitForOperation(opId: string, timeoutMs?: number): Promise<Operation>;
  /** DELETE /v1/vms/{id} and waits for it; throws unless it succeeded. */
  deleteVm(vmId: string): Promise<void>;
  stop(): Promise<void>;
};

export async function startKvmStack(): Promise<KvmStack> {
  const bed = await startKvmTestbed({ basePort: "auto" });
  let dataDir: string | undefined;
  let stack: Stack | undefined;
  // The last lines of every child, for the error when one dies (the run itself prints nothing).
  const tail: string[] = [];
  const stop = async () => {
    try {
      await stack?.stop();
    } finally {
      try {
        await bed.stop();
      } finally {
        if (dataDir) await rm(dataDir, { recursive: true, force: true });
      }
    }
  };
  try {
    dataDir = await mkdtemp(join(tmpdir(), "usher-bench-kvm-"));
    stack = await startStack({
      dataDir,
      sites: [
        {
          name: SITE,
          hosts: stackHosts(bed),
        },
      ],
      logLevel: "warn",
      // Inventory runs virsh on the hosts; once a minute keeps it mostly out of the measured runs.
      agentInventoryIntervalSeconds: 60,
      logSink: (source, line) => {
        tail.push(`${source} | ${line}`);
        if (tail.length > 200) tail.shift();
      },
    });
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
  const s = stack;
  const token = await s.userToken("bench", "bench-kvm");

  const api: KvmStack["api"] = async (path, init) => {
    const res = await fetch(`${s.apiUrl}${path}`, {
      method: init.method ?? (init.json === undefined ? "GET" : "POST"),
      headers: {
        authorization: `Bearer ${token}`,
        ...(init.json === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) }),
    });
    const text = await res.text();
    if (res.status !== init.expect) {
      throw new Error(
        `${init.method ?? "GET"} ${path}: HTTP ${res.status} ${text}\n${tail.slice(-20).join("\n")}`,
      );
    }
    return (text ? JSON.parse(text) : undefined) as never;
  };

  const waitForOperation: KvmStack["waitForOperation"] = async (opId, timeoutMs = 120_000) => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const op = await api<Operation>(`/v1/operations/${encodeURIComponent(opId)}?waitSeconds=20`, {
        expect: 200,
      });
      if (TERMINAL_OP_STATUSES.includes(op.status)) return op;
    }
    throw new Error(`operation ${opId} not terminal after ${timeoutMs} ms\n${tail.slice(-20).join("\n")}`);
  };

  return {
    bed,
    stack: s,
    token,
    api,
    waitForOperation,
    async deleteVm(vmId) {
      const { operation } = await api<{ operation: Operation }>(`/v1/vms/${vmId}`, {
        method: "DELETE",
        expect: 202,
      });
      const op = await waitForOperation(operation.id);
      if (op.status !== "succeeded") throw new Error(`delete of ${vmId}: ${JSON.stringify(op.error)}`);
    },
    stop,
  };
}
