/**
 * The VM lifecycle as a table: which states an action may start from, the state shown while it runs,
 * and the state it leaves on success. Pure, so the API, the scheduler and the tests share one truth.
 */
import type { OpAction, VmState } from "../contracts/common.ts";
import type { PowerState } from "../contracts/messages.ts";

type Rule = {
  /** States the action may start from. */
  from: readonly VmState[];
  /** State while the agent works (absent: unchanged). */
  during?: VmState;
  /** State on success. */
  after: VmState;
  /** True when the action needs a host with a capacity claim (placement if the VM holds none). */
  needsPlacement?: boolean;
  /** True when success releases the VM's capacity claim. */
  releases?: boolean;
};

export const LIFECYCLE: Record<OpAction, Rule> = {
  start: {
    from: ["pending", "stopped", "destroyed", "error"],
    during: "starting",
    after: "running",
    needsPlacement: true,
  },
  shutdown: { from: ["running", "paused"], during: "stopping", after: "stopped" },
  destroy: {
    from: ["pending", "running", "paused", "suspended", "stopped", "error"],
    during: "stopping",
    after: "destroyed",
    releases: true,
  },
  delete: {
    from: [
      "pending",
      "starting",
      "running",
      "paused",
      "suspended",
      "stopping",
      "stopped",
      "migrating",
      "error",
      "destroyed",
    ],
    during: "stopping",
    after: "destroyed",
    releases: true,
  },
  cycle: { from: ["running", "paused", "error"], during: "starting", after: "running" },
  reboot: { from: ["running"], during: "starting", after: "running" },
  pause: { from: ["running"], after: "paused" },
  unpause: { from: ["paused"], after: "running" },
  suspend: { from: ["running", "paused"], during: "stopping", after: "suspended" },
  resume: { from: ["suspended"], during: "starting", after: "running" },
  migrate: { from: ["running", "paused"], during: "migrating", after: "running" },
};

export function canStart(action: OpAction, state: VmState): boolean {
  return LIFECYCLE[action].from.includes(state);
}

/** The VM state a driver's observed power state stands for. */
export function stateFromPower(power: PowerState): VmState {
  switch (power) {
    case "running":
      return "running";
    case "paused":
      return "paused";
    case "suspended":
      return "suspended";
    case "stopped":
      return "stopped";
    case "absent":
      return "destroyed";
  }
}
