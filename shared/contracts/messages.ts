/**
 * Queue messages. Each SQS body is one of these; agent commands and results travel as compact JWS
 * (EdDSA) whose payload holds the schema below, so both sides validate the same contract.
 */
import { z } from "zod";
import { ErrorInfo, HypervisorKind, OpAction, VmNetwork } from "./common.ts";
import { VmSpec } from "./vm.ts";

/** `ops` queue: an operation to schedule. The body is only a pointer; state lives in DynamoDB. */
/** An operation to schedule. `vmId` (sent since it was added) lets the consumer read both at once. */
export const OpsMessage = z.object({ opId: z.string(), requestId: z.string(), vmId: z.string().optional() });
export type OpsMessage = z.infer<typeof OpsMessage>;

/** Power states a driver reports for a domain. `absent`: no such domain on the host. */
export const PowerState = z.enum(["running", "paused", "suspended", "stopped", "absent"]);
export type PowerState = z.infer<typeof PowerState>;

export const MigrationTarget = z.object({ hostId: z.string(), address: z.string(), kind: HypervisorKind });
export type MigrationTarget = z.infer<typeof MigrationTarget>;

/** What the control plane tells an agent to do (the `cmd` claim of a signed command). */
export const AgentCommand = z.object({
  opId: z.string(),
  requestId: z.string(),
  action: OpAction,
  site: z.string(),
  hostId: z.string(),
  vmId: z.string(),
  vmName: z.string(),
  spec: VmSpec,
  /** The VM's address and VLAN (IP manager), for its NIC. */
  network: VmNetwork.optional(),
  /** Only for `migrate`. */
  target: MigrationTarget.optional(),
  live: z.boolean().optional(),
  deadline: z.string(),
  attempt: z.number().int(),
});
export type AgentCommand = z.infer<typeof AgentCommand>;

/** An agent's report on a command: `running` once it starts, then one terminal report. */
export const AgentResult = z.object({
  type: z.literal("result"),
  opId: z.string(),
  requestId: z.string(),
  site: z.string(),
  hostId: z.string(),
  vmId: z.string(),
  status: z.enum(["running", "succeeded", "failed"]),
  /** The domain's power state after the operation, where the agent could observe it. */
  powerState: PowerState.optional(),
  /** The host the domain is on afterwards (differs from hostId after a migration). */
  finalHostId: z.string().optional(),
  progressPercent: z.number().min(0).max(100).optional(),
  error: ErrorInfo.optional(),
  /** Time the hypervisor itself spent on the operation. */
  hypervisorMs: z.number().optional(),
  at: z.string(),
});
export type AgentResult = z.infer<typeof AgentResult>;

/** What every report on `cmd` carries: the command it is about, named as the command named it. */
export function resultOf(cmd: AgentCommand) {
  return {
    type: "result",
    opId: cmd.opId,
    requestId: cmd.requestId,
    site: cmd.site,
    hostId: cmd.hostId,
    vmId: cmd.vmId,
  } as const;
}

export const DomainReport = z.object({
  /** The hypervisor's UUID for the domain. */
  uuid: z.string(),
  /** Usher's VM id, from the domain's metadata; absent for domains Usher did not make. */
  vmId: z.string().optional(),
  opId: z.string().optional(),
  name: z.string(),
  powerState: PowerState,
  vcpus: z.number().int(),
  memoryMiB: z.number().int(),
});
export type DomainReport = z.infer<typeof DomainReport>;

export const HostInventory = z.object({
  hostId: z.string(),
  reachable: z.boolean(),
  error: ErrorInfo.optional(),
  domains: z.array(DomainReport),
  free: z.object({ vcpus: z.number(), memoryMiB: z.number() }).optional(),
  /**
   * How busy the host's CPUs are, as a fraction of all of them (1 = every CPU busy; may exceed 1):
   * KVM the one-minute load average over the CPUs, Xen the CPU time its domains used since the last
   * report, sim its running vCPUs over its CPUs. Absent until the driver has a reading.
   */
  load: z.number().min(0).optional(),
});
export type HostInventory = z.infer<typeof HostInventory>;

/**
 * Periodic report of what is really on each host of a site. A large site's inventory travels in
 * parts, each one message holding some of its hosts (each host whole) and the inventory's one `at`:
 * the control plane records every part on its own, host by host.
 */
export const AgentInventory = z.object({
  type: z.literal("inventory"),
  site: z.string(),
  agentId: z.string(),
  hosts: z.array(HostInventory),
  /** When the agent began listing its hosts (the same on every part of one inventory). */
  at: z.string(),
  /** Which part of the inventory this is (from 1), when it was sent in parts. */
  part: z.number().int().min(1).optional(),
  /**
   * On the last part: true. Parts are sent as hosts are listed, so how many there are is known only
   * at the end; an inventory whose last part never arrives loses only the hosts of its missing parts.
   */
  last: z.boolean().optional(),
});
export type AgentInventory = z.infer<typeof AgentInventory>;

/**
 * Work for the agent that is not a VM operation: a plugin that runs on premises (DNS, say), the
 * fencing of a failed host, or the purge of a stray copy of a VM from a host whose fence did not hold
 * (`payload.vmId`; the VM runs elsewhere). Signed like commands (the `task` claim), on the same queue.
 */
export const AgentTask = z.object({
  taskId: z.string(),
  requestId: z.string().optional(),
  site: z.string(),
  kind: z.enum(["plugin", "fence", "purge"]),
  /** For `plugin`: the agent-side plugin to run, and the event it is run for. */
  plugin: z.string().optional(),
  event: z.string().optional(),
  /** For `fence`, the host to fence; for `purge`, the host to remove the domain from; for a plugin, the host it concerns if any. */
  hostId: z.string().optional(),
  /** The plugin's input (e.g. `{ name, address }` for DNS). */
  payload: z.record(z.string(), z.unknown()).default({}),
  deadline: z.string(),
});
export type AgentTask = z.infer<typeof AgentTask>;

/** The agent's report on a task. */
export const TaskResult = z.object({
  type: z.literal("task_result"),
  taskId: z.string(),
  requestId: z.string().optional(),
  site: z.string(),
  kind: AgentTask.shape.kind,
  plugin: z.string().optional(),
  event: z.string().optional(),
  hostId: z.string().optional(),
  ok: z.boolean(),
  error: ErrorInfo.optional(),
  /** What the task found or did (e.g. `{ fenced: true }`). */
  data: z.record(z.string(), z.unknown()).optional(),
  at: z.string(),
});
export type TaskResult = z.infer<typeof TaskResult>;

export const AgentReport = z.discriminatedUnion("type", [AgentResult, AgentInventory, TaskResult]);
export type AgentReport = z.infer<typeof AgentReport>;
