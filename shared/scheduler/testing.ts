/** Builders for the scheduler's tests: a roomy enabled host and a small demand, overridden per case. */
import type { Demand, HostSnapshot } from "./types.ts";

export function host(id: string, over: Partial<HostSnapshot> = {}): HostSnapshot {
  return {
    id,
    kind: "sim",
    state: "enabled",
    labels: {},
    limitVcpus: 16,
    limitMemoryMiB: 16384,
    freeVcpus: 16,
    freeMemoryMiB: 16384,
    freeDevices: {},
    ...over,
  };
}

export function demand(over: Partial<Demand> = {}): Demand {
  return { vcpus: 2, memoryMiB: 2048, devices: {}, ...over };
}
