/**
 * The plugin model (Usher's): the framework provides mechanisms, a site's policy lives in plugins
 * that act on named events. A plugin is a plain object with a name and a handler per event it
 * cares about; `usher.config.ts` lists the plugins in the order they run. See docs/plugins.md.
 *
 * Four kinds of hook, by when they run and what they may do:
 * - **Request hooks** (`<action>_request`): in the API, before anything is written, claimed or
 *   enqueued. May veto (the caller sees the reason) or adjust the spec and arguments.
 * - **Notifications** (`<action>`, `<action>_failure`, `state_change`, `register`, `unregister`,
 *   `host_down`, `lease_expiring`, `lease_expired`, `vm_released`): after the change is committed, from an outbox
 *   written in the same transaction, at least once. A failing one is logged and retried later; it
 *   never blocks or loses the operation.
 * - **`request`**: every API request, accepted or rejected, with its outcome, after the response.
 * - **Resource hooks** (`claim`, `release`): in the scheduler; their writes join the capacity claim's
 *   transaction (or the release's), so they are all-or-none with it.
 * - **Placement hooks** (`filters`, `weighers`): extra pipeline stages a policy can name.
 * - **`sweep`**: on every run of the sweep, for policy driven by time (lease expiry).
 */
import type { Principal } from "../auth/principal.ts";
import type { OpAction } from "../contracts/common.ts";
import type { VmSpec } from "../contracts/vm.ts";
import type { UsherError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Filter } from "../scheduler/filters.ts";
import type { Weigher } from "../scheduler/weighers.ts";
import type { Deps } from "../services/context.ts";
import type { TxItem } from "../store/base.ts";
import type { HostItem, OpItem, VmItem } from "../store/items.ts";

/** Where a plugin's code runs. Plugins that reach on-premise services run in the bridge agent. */
export type PluginPlace = "control-plane" | "agent";

/** Every event a notification hook can subscribe to. */
export const NOTIFY_EVENTS = [
  "start",
  "shutdown",
  "destroy",
  "cycle",
  "reboot",
  "pause",
  "unpause",
  "migrate",
  "suspend",
  "resume",
  "delete",
  "start_failure",
  "shutdown_failure",
  "destroy_failure",
  "cycle_failure",
  "reboot_failure",
  "pause_failure",
  "unpause_failure",
  "migrate_failure",
  "suspend_failure",
  "resume_failure",
  "delete_failure",
  "state_change",
  "register",
  "unregister",
  "host_down",
  "lease_expiring",
  "lease_expired",
  /**
   * A VM gave up its home host (destroy, delete, a failed start that had placed it, drift, an
   * evacuation), and with it its address and quota charge. `data.vm` holds its name, site and network
   * as they were; `data.leftHome` the host.
   */
  "vm_released",
] as const satisfies readonly (OpAction | `${OpAction}_failure` | string)[];
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

export type RequestEvent = `${OpAction}_request`;

/** What every hook receives besides its event. */
export type PluginContext = {
  /** The control plane's services and state (read what you need; write through services). */
  deps: Deps;
  /** Tagged with the plugin's name. */
  log: Logger;
  /** Aborted when the hook's time is up. */
  signal: AbortSignal;
};

/** An operation about to be accepted: a new VM (`create`), or an action on an existing one. */
export type ActionRequest = {
  action: OpAction;
  principal: Principal;
  requestId: string;
  project: string;
  site: string;
  /** The VM's spec: as requested for a new VM (adjustable), as recorded otherwise. */
  spec: VmSpec;
  /** Action arguments (`targetHostId`, `live`); adjustable. */
  args: Record<string, unknown>;
  /** Set for a new VM: its name, cluster and labels as asked. */
  create?:
    | { name: string; clusterId?: string | undefined; labels?: Record<string, string> | undefined }
    | undefined;
  /** Set for an action on an existing VM. */
  vm?: VmItem | undefined;
};

/** A request hook's answer: nothing (go on), a veto, or adjustments for the hooks after it. */
export type Verdict =
  | undefined
  | { veto: string; details?: Record<string, unknown> }
  | { spec?: VmSpec; args?: Record<string, unknown> };

/** One committed event a notification hook is told about (the event log's record of it). */
export type Notice = {
  event: NotifyEvent;
  eventId: string;
  /** The event log's type, e.g. `op.succeeded`, `host.down`. */
  type: string;
  /** What it is about: `VM#…`, `HOST#…`, `CLUSTER#…`. */
  subject: string;
  project?: string | undefined;
  requestId?: string | undefined;
  opId?: string | undefined;
  data: Record<string, unknown>;
  at: string;
  /** How many times delivery to this plugin was tried before (0 the first time). */
  attempt: number;
};

/** What the API tells `request` hooks after each request. */
export type RequestRecord = {
  requestId: string;
  method: string;
  path: string;
  /** `vm.create`, `vm.start`, `cluster.create`, `host.patch`, … or `<method> <route>` when unnamed. */
  action: string;
  subject?: string | undefined;
  /** The project the request acted on (an admin may act on another's); the caller's when unknown. */
  project?: string | undefined;
  /** The caller's own project, when it is not `project`. */
  actorProject?: string | undefined;
  status: number;
  outcome: "accepted" | "rejected" | "failed";
  /** The problem's code for a rejected or failed request. */
  code?: string | undefined;
  at: string;
  durationMs: number;
};

/** VMs being given a host in one claim transaction (one for a start or migration, many for a gang). */
export type ClaimBatch = {
  op: OpItem;
  /** `hostId` for a VM's home host; `migrationHostId` for a migration's target (a second claim). */
  field: "hostId" | "migrationHostId";
  placements: { vm: VmItem; host: HostItem }[];
};

/** VMs losing their home host in one transaction (destroy, delete, a start that failed, evacuation). */
export type ReleaseBatch = { op?: OpItem | undefined; vms: VmItem[] };

/**
 * Writes a resource hook adds to a claim or release transaction. The VM updates are merged into
 * the transaction's own update of each VM (a transaction may touch an item only once).
 */
export type Contribution = {
  items: TxItem[];
  /** By VM id: attributes to set on the VM. */
  vmSet?: Record<string, Record<string, unknown>>;
  /** By VM id: attributes to remove from the VM. */
  vmRemove?: Record<string, string[]>;
  /**
   * A condition of this contribution's items failed (indexes into `items`): the error that fails the
   * operation, or `retry` to prepare the contribution again (e.g. an address taken meanwhile).
   */
  onConditionFailed?: (failed: number[]) => UsherError | "retry";
};

export type Hooks = {
  [E in RequestEvent]?: (ctx: PluginContext, req: ActionRequest) => Verdict | Promise<Verdict>;
} & {
  [E in NotifyEvent]?: (ctx: PluginContext, notice: Notice) => void | Promise<void>;
} & {
  request?: (ctx: PluginContext, rec: RequestRecord) => void | Promise<void>;
  claim?: (
    ctx: PluginContext,
    batch: ClaimBatch,
  ) => Contribution | undefined | Promise<Contribution | undefined>;
  release?: (
    ctx: PluginContext,
    batch: ReleaseBatch,
  ) => Contribution | undefined | Promise<Contribution | undefined>;
  /** On every sweep (a few seconds locally, each scheduled run on AWS): time-driven policy (leases). */
  sweep?: (ctx: PluginContext) => void | Promise<void>;
};

export type Plugin = {
  /** Unique in a config; names the plugin in logs, vetoes and the outbox. */
  name: string;
  /** Where its code runs; `agent` plugins' hooks here only send signed tasks to the site's agent. */
  runsIn: PluginPlace;
  /** Per-call time limit, ms (default 2000). */
  timeoutMs?: number | undefined;
  hooks: Hooks;
  /** Extra placement filters and weighers a scheduler policy may name. */
  placement?: {
    filters?: Record<string, Filter> | undefined;
    weighers?: Record<string, Weigher> | undefined;
  };
};
