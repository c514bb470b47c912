/**
 * Where a policy's names resolve: the built-in filters and weighers, and those plugins add
 * (`Plugin.placement`). A policy names stages; a registry turns the names into the objects.
 */
import { FILTERS, type Filter } from "./filters.ts";
import { WEIGHERS, type Weigher } from "./weighers.ts";

export type Registry = {
  readonly filters: Readonly<Record<string, Filter>>;
  readonly weighers: Readonly<Record<string, Weigher>>;
};

/** The built-ins alone. */
export const BUILT_INS: Registry = { filters: FILTERS, weighers: WEIGHERS };

type Stages = {
  name: string;
  placement?: {
    filters?: Record<string, Filter> | undefined;
    weighers?: Record<string, Weigher> | undefined;
  };
};

/**
 * The built-ins plus every plugin's stages, and the problems found on the way: a plugin's stage may
 * not shadow a built-in or another plugin's, and must be registered under its own `name` (rejections
 * and scores are reported by it).
 */
export function registryOf(plugins: readonly Stages[]): { registry: Registry; problems: string[] } {
  const filters: Record<string, Filter> = { ...FILTERS };
  const weighers: Record<string, Weigher> = { ...WEIGHERS };
  const problems: string[] = [];
  const add = <T extends { name: string }>(
    into: Record<string, T>,
    what: string,
    plugin: string,
    at: string,
    stage: T,
  ) => {
    if (Object.hasOwn(into, at)) problems.push(`plugin ${plugin}: ${what} ${at} is already defined`);
    else if (stage?.name !== at)
      problems.push(`plugin ${plugin}: ${what} ${at} is named ${String(stage?.name)}`);
    else into[at] = stage;
  };
  for (const p of plugins) {
    for (const [at, f] of Object.entries(p.placement?.filters ?? {})) add(filters, "filter", p.name, at, f);
    for (const [at, w] of Object.entries(p.placement?.weighers ?? {}))
      add(weighers, "weigher", p.name, at, w);
  }
  return { registry: { filters, weighers }, problems };
}
