/**
 * The shapes the placement pipeline works on. A `HostItem` from the store is a `HostSnapshot` as it
 * is (extra fields are ignored), and a VM's spec maps onto a `Demand` field for field.
 */
import type { DeviceCounts, HostState, HypervisorKind, Labels } from "../contracts/common.ts";

/**
 * One host as the scheduler sees it when a decision starts.
 *
 * Limits already carry the host's allocation ratios (`limit = floor(capacity × ratio)`, devices never
 * overcommitted), so overcommit is decided once, when the host is registered or patched, and the
 * capacity filters only compare free counters with the demand.
 */
export type HostSnapshot = {
  id: string;
  kind: HypervisorKind;
  state: HostState;
  labels?: Labels | undefined;
  limitVcpus: number;
  limitMemoryMiB: number;
  /** Devices by model. When absent, taken to equal `freeDevices` (nothing of them allocated). */
  limitDevices?: DeviceCounts | undefined;
  freeVcpus: number;
  freeMemoryMiB: number;
  freeDevices: DeviceCounts;
  /** Agent-reported load, 0 (idle) to 1 (saturated); absent when the agent has not reported one. */
  load?: number | undefined;
  /** Ids of the VMs placed on this host, for same-host and different-host constraints. */
  vmIds?: readonly string[] | undefined;
  /** The group of each VM placed on this host, one entry per member, for (anti-)affinity. */
  groups?: readonly string[] | undefined;
};

/**
 * What one VM asks of a host.
 *
 * Groups are named sets of VMs: a demand with any of the three group fields becomes a member of that
 * group once applied to a snapshot, and the field says how it relates to the members already placed.
 * Give a group one relation (all members hard-affine, or all anti-affine); mixing them is allowed
 * but rarely means anything useful.
 */
export type Demand = {
  vcpus: number;
  memoryMiB: number;
  devices: DeviceCounts;
  /** Hypervisor kind required; any when absent. */
  hypervisor?: HypervisorKind | undefined;
  /** Labels the host must carry with exactly these values. */
  requiredLabels?: Labels | undefined;
  /** The VM being placed. Recorded by `Snapshot.apply`, so later demands can name it. */
  vmId?: string | undefined;
  /** Hard affinity: on the host already holding members of this group (any host for the first). */
  affinityGroup?: string | undefined;
  /** Hard anti-affinity: never on a host holding a member of this group. */
  antiAffinityGroup?: string | undefined;
  /** Soft affinity: preferred (by the `soft_affinity` weigher) next to members of this group. */
  softAffinityGroup?: string | undefined;
  /** On the one host holding every one of these VMs; nowhere if they are apart or not placed. */
  sameHostAs?: readonly string[] | undefined;
  /** On no host holding any of these VMs. */
  differentHostFrom?: readonly string[] | undefined;
};

/** Hosts each filter rejected, by filter name; each rejected host is counted once, under the first filter it failed. */
export type Rejections = Record<string, { count: number; reason: string }>;

/** The outcome of one decision. With `hostId` undefined, the rejections add up to `considered`. */
export type PlaceResult = { hostId: string | undefined; rejections: Rejections; considered: number };

/** One acceptable host in a dry run: its total score and each weigher's unweighted score (0..1). */
export type Candidate = { hostId: string; score: number; scores: Record<string, number> };

/** Every acceptable host of a dry run, best first, and why the others were rejected. */
export type DryRun = { candidates: Candidate[]; rejections: Rejections; considered: number };
