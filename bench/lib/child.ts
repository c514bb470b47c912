/**
 * Runs a measurement in a fresh Node process: each gets its own heap (clean memory figures, no JIT
 * state carried over from the previous size) and `--expose-gc`. The child prints one JSON line last.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Runs `node --expose-gc <modulePath> <json input>` and parses the last line of its stdout. */
export async function inChild<T>(modulePath: string, input: unknown): Promise<T> {
  const { stdout } = await run(process.execPath, ["--expose-gc", modulePath, JSON.stringify(input)], {
    maxBuffer: 64 * 1024 * 1024,
  });
  const last = stdout.trimEnd().split("\n").at(-1);
  if (!last) throw new Error(`${modulePath} printed nothing`);
  return JSON.parse(last) as T;
}

/** The child's side: reads the input, runs `fn`, prints its result as the last line. */
export async function childMain<I, O>(fn: (input: I) => O | Promise<O>): Promise<void> {
  const input = JSON.parse(process.argv[2] ?? "null") as I;
  process.stdout.write(`${JSON.stringify(await fn(input))}\n`);
}

/** Heap in use after a full collection (needs `--expose-gc`; without it, a noisier plain reading). */
export function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}
