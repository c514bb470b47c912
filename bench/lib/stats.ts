/**
 * Repeated runs reduced to a median and its spread: these machines are shared and noisy, so one run
 * says little and a mean is pulled by the one run that met a busy neighbour.
 */

/** A median with the extremes of the runs it came from. */
export type Summary = { median: number; min: number; max: number; runs: number };

/** The `p` quantile (0..1) of sorted values, interpolated between neighbours. */
export function quantile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const at = (sorted.length - 1) * p;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    median: quantile(sorted, 0.5),
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
    runs: sorted.length,
  };
}

/** Runs `fn` `runs` times, one after the other, and summarizes each named figure it returns. */
export async function repeat<K extends string>(
  runs: number,
  fn: (run: number) => Record<K, number> | Promise<Record<K, number>>,
): Promise<Record<K, Summary>> {
  const samples = {} as Record<K, number[]>;
  for (let run = 0; run < runs; run++) {
    const figures = await fn(run);
    for (const key in figures) {
      samples[key] ??= [];
      samples[key].push(figures[key]);
    }
  }
  const out = {} as Record<K, Summary>;
  for (const key in samples) out[key] = summarize(samples[key]);
  return out;
}
