/**
 * The DNS plugin's task (control plane → agent): a `plugin` AgentTask with `plugin: "dns"` carries
 * one VM's name and address. Its `event` says what to do: `start` adds (or replaces) the VM's A and
 * PTR records, `destroy` and `delete` remove them.
 */
import { z } from "zod";
import { Name } from "./common.ts";

/** The name agent tasks use for the DNS plugin (the key in the agent's AGENT_PLUGINS). */
export const DNS_PLUGIN = "dns";

export const DnsTaskEvent = z.enum(["start", "destroy", "delete"]);
export type DnsTaskEvent = z.infer<typeof DnsTaskEvent>;

export const DnsTaskPayload = z.object({
  vmId: z.string().min(1),
  /** The VM's name: already a DNS label (Usher's `Name`). */
  name: Name,
  /** The VM's project, any text: the agent turns it into a DNS label. */
  project: z.string().min(1).max(128),
  /** The VM's IPv4 address, as the IP manager gave it. */
  address: z.ipv4(),
});
export type DnsTaskPayload = z.infer<typeof DnsTaskPayload>;
