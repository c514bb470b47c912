/**
 * The IP address manager (Usher's uipmgr): named IPv4 ranges, each with an access list and a VLAN. A VM
 * is given an address when it is placed on a home host and gives it back when it leaves it (destroy,
 * delete, a start that failed, drift adopted); a migration keeps it. Both happen inside the capacity
 * claim's (or release's) transaction, and each address is its own item written only if absent, so the
 * same address is never handed out twice, whatever the number of schedulers.
 *
 * Which range: the one the VM's `ipam/range` label names (option `rangeLabel`), else the first range in
 * config order that is open to the VM and has a free address. A range is open to everyone when it has
 * neither `projects` nor `roles`; otherwise to the projects it lists and to requesters holding one of
 * the roles it lists (either grants access). The requester's roles are recorded on the start operation
 * (`args.ipamRoles`) by this plugin's request hook, since operations do not otherwise keep them.
 */
import type { VmNetwork } from "../../contracts/common.ts";
import { ErrorCode, UsherError } from "../../errors.ts";
import type { Deps } from "../../services/context.ts";
import { deleteOf, getItem, notExists, putOf, queryAll, type TxItem } from "../../store/base.ts";
import type { OpItem, VmItem } from "../../store/items.ts";
import type { ActionRequest, ClaimBatch, Contribution, Plugin, ReleaseBatch, Verdict } from "../types.ts";
import { movesHome } from "./home.ts";
import { intToIp, ipToInt, parseCidr } from "./ipv4.ts";

export type IpRange = {
  /** Names the range in keys, labels and the VM's `network`. */
  name: string;
  /** The network, e.g. `10.20.0.0/24` (prefix 8..30). */
  cidr: string;
  /** First and last address handed out; default the first and last host addresses of the network. */
  first?: string;
  last?: string;
  /** The network's gateway, told to the VM and never handed out. */
  gateway?: string;
  /** 802.1Q tag of the network (the host's bridge must then be Open vSwitch). */
  vlan?: number;
  /** Projects that may draw from the range. */
  projects?: readonly string[];
  /** Roles (of the requester) that may draw from the range. */
  roles?: readonly string[];
};

export type IpManagerOptions = {
  /** Unique per config; default `ipam`. */
  name?: string;
  /** In order of preference. */
  ranges: IpRange[];
  /** The VM label that asks for a range by name; default `ipam/range`. */
  rangeLabel?: string;
  timeoutMs?: number;
};

/** One item per address handed out, in its range's partition. */
export const ipamKeys = {
  address: (range: string, address: string) => ({ pk: `IPRANGE#${range}`, sk: `ADDR#${address}` }),
} as const;

export type AddressItem = {
  type: "ipaddr";
  range: string;
  address: string;
  vmId: string;
  project: string;
  opId: string;
  allocatedAt: string;
};

/** Where the start operation keeps its requester's roles for the access lists. */
export const ROLES_ARG = "ipamRoles";

type Range = {
  name: string;
  first: number;
  last: number;
  prefixLength: number;
  gateway?: number;
  vlan?: number;
  projects?: ReadonlySet<string>;
  roles?: ReadonlySet<string>;
};

const RANGE_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** Checks a range's options (at start-up) and turns it into numbers. */
function compile(r: IpRange): Range {
  const bad = (why: string) => new Error(`ipam: range ${JSON.stringify(r.name)}: ${why}`);
  if (!RANGE_NAME.test(r.name)) throw bad("the name must be lower-case letters, digits, '.', '_' and '-'");
  let net: ReturnType<typeof parseCidr>;
  try {
    net = parseCidr(r.cidr);
  } catch (err) {
    throw bad((err as Error).message);
  }
  if (net.prefixLength < 8 || net.prefixLength > 30) throw bad("the prefix length must be 8..30");
  const addr = (a: string) => {
    try {
      return ipToInt(a);
    } catch (err) {
      throw bad((err as Error).message);
    }
  };
  const first = r.first !== undefined ? addr(r.first) : net.network + 1;
  const last = r.last !== undefined ? addr(r.last) : net.broadcast - 1;
  if (!(net.network < first && first <= last && last < net.broadcast))
    throw bad(`first..last must be host addresses of ${r.cidr}, first <= last`);
  const gateway = r.gateway !== undefined ? addr(r.gateway) : undefined;
  if (gateway !== undefined && !(net.network < gateway && gateway < net.broadcast))
    throw bad(`the gateway is not a host address of ${r.cidr}`);
  if (r.vlan !== undefined && !(Number.isInteger(r.vlan) && r.vlan >= 1 && r.vlan <= 4094))
    throw bad("the VLAN must be 1..4094");
  return {
    name: r.name,
    first,
    last,
    prefixLength: net.prefixLength,
    ...(gateway !== undefined ? { gateway } : {}),
    ...(r.vlan !== undefined ? { vlan: r.vlan } : {}),
    ...(r.projects ? { projects: new Set(r.projects) } : {}),
    ...(r.roles ? { roles: new Set(r.roles) } : {}),
  };
}

/** The roles the start operation recorded (none when it was submitted without this plugin). */
function rolesOf(op: OpItem): string[] {
  const roles = op.args?.[ROLES_ARG];
  return Array.isArray(roles) ? roles.filter((r): r is string => typeof r === "string") : [];
}

/** A free address of `range` not in `taken`: random probes first (so racing schedulers seldom pick alike), then a scan. */
function pickFree(range: Range, taken: ReadonlySet<number>): number | undefined {
  const size = range.last - range.first + 1;
  const usable = (n: number) => !taken.has(n) && n !== range.gateway;
  for (let i = 0; i < 32; i++) {
    const n = range.first + Math.floor(Math.random() * size);
    if (usable(n)) return n;
  }
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size; i++) {
    const n = range.first + ((start + i) % size);
    if (usable(n)) return n;
  }
  return undefined;
}

/** The addresses of a range handed out now (a strongly consistent read of its partition). */
async function allocated(deps: Deps, range: string): Promise<Set<number>> {
  const items = await queryAll<{ sk: string }>(deps.db, {
    KeyConditionExpression: "pk = :pk AND begins_with(sk, :a)",
    ExpressionAttributeValues: { ":pk": ipamKeys.address(range, "").pk, ":a": "ADDR#" },
    ProjectionExpression: "#sk",
    ExpressionAttributeNames: { "#sk": "sk" },
    ConsistentRead: true,
  });
  return new Set(items.map((i) => ipToInt(i.sk.slice("ADDR#".length))));
}

/** The IP manager plugin; options are checked here, so a bad range stops start-up. */
export function ipManager(options: IpManagerOptions): Plugin {
  if (!options.ranges.length) throw new Error("ipam: at least one range is needed");
  const ranges = options.ranges.map(compile);
  const names = new Set(ranges.map((r) => r.name));
  if (names.size !== ranges.length) throw new Error("ipam: range names must be unique");
  const rangeLabel = options.rangeLabel ?? "ipam/range";
  const usesRoles = ranges.some((r) => r.roles);
  const name = options.name ?? "ipam";
  const vetoed = (message: string, details: Record<string, unknown> = {}) =>
    new UsherError(ErrorCode.vetoed, message, { details: { plugin: name, ...details } });

  const open = (r: Range, project: string, roles: readonly string[]) =>
    (!r.projects && !r.roles) || !!r.projects?.has(project) || roles.some((role) => r.roles?.has(role));

  /** The ranges a VM may draw from, in order; throws a veto when it may draw from none. */
  const choices = (vm: Pick<VmItem, "name" | "project" | "labels">, roles: readonly string[]): Range[] => {
    const asked = vm.labels?.[rangeLabel];
    if (asked !== undefined) {
      const r = ranges.find((x) => x.name === asked);
      if (!r)
        throw vetoed(`VM ${vm.name} asks for address range ${asked}, which does not exist`, { range: asked });
      if (!open(r, vm.project, roles))
        throw vetoed(`address range ${asked} is not open to project ${vm.project}`, { range: asked });
      return [r];
    }
    const mine = ranges.filter((r) => open(r, vm.project, roles));
    if (!mine.length) throw vetoed(`no address range is open to project ${vm.project}`, { roles });
    return mine;
  };

  const request = (_ctx: unknown, req: ActionRequest): Verdict => {
    // A VM that keeps its home host keeps its address: nothing to check.
    if (req.vm?.hostId) return undefined;
    const roles = [...req.principal.roles];
    try {
      const vm = { name: req.create?.name ?? req.vm?.name ?? "", project: req.project };
      choices({ ...vm, labels: req.create?.labels ?? req.vm?.labels ?? {} }, roles);
    } catch (err) {
      if (err instanceof UsherError) return { veto: err.message, details: err.details ?? {} };
      throw err;
    }
    return usesRoles ? { args: { [ROLES_ARG]: roles } } : undefined;
  };

  const claim = async (ctx: { deps: Deps }, batch: ClaimBatch): Promise<Contribution | undefined> => {
    // A migration target's claim: the VM keeps the address of its home.
    if (batch.field !== "hostId") return undefined;
    const { deps } = ctx;
    const roles = rolesOf(batch.op);
    const taken = new Map<string, Set<number>>();
    const items: TxItem[] = [];
    const vmSet: Record<string, Record<string, unknown>> = {};
    const now = deps.now().toISOString();
    for (const { vm } of batch.placements) {
      if (vm.network) continue; // already holds one (not expected without a home host)
      const candidates = choices(vm, roles);
      let network: VmNetwork | undefined;
      for (const r of candidates) {
        const set = taken.get(r.name) ?? (await allocated(deps, r.name));
        taken.set(r.name, set);
        const n = pickFree(r, set);
        if (n === undefined) continue;
        set.add(n); // a gang's next VM must not pick it too
        network = {
          range: r.name,
          address: intToIp(n),
          prefixLength: r.prefixLength,
          ...(r.gateway !== undefined ? { gateway: intToIp(r.gateway) } : {}),
          ...(r.vlan !== undefined ? { vlan: r.vlan } : {}),
        };
        break;
      }
      if (!network)
        throw new UsherError(
          ErrorCode.noCapacity,
          `no free address for VM ${vm.name} in range ${candidates.map((r) => r.name).join(", ")}`,
          { details: { plugin: name, ranges: candidates.map((r) => r.name), reason: "addresses_exhausted" } },
        );
      const item: AddressItem = {
        type: "ipaddr",
        range: network.range,
        address: network.address,
        vmId: vm.id,
        project: vm.project,
        opId: batch.op.id,
        allocatedAt: now,
      };
      // One holder per address: fails if another claim took it since we read the range.
      items.push({
        Put: putOf(deps.db.table, { ...item, ...ipamKeys.address(item.range, item.address) }, notExists),
      });
      vmSet[vm.id] = { network };
    }
    if (!items.length) return undefined;
    // Taken meanwhile by a racing scheduler: read the range again and pick another.
    return { items, vmSet, onConditionFailed: () => "retry" };
  };

  const release = async (ctx: { deps: Deps }, batch: ReleaseBatch): Promise<Contribution | undefined> => {
    const { deps } = ctx;
    const items: TxItem[] = [];
    const vmRemove: Record<string, string[]> = {};
    for (const vm of batch.vms) {
      // A VM moving to its migration's target keeps its address there.
      if (!vm.network || movesHome(batch, vm)) continue;
      vmRemove[vm.id] = ["network"];
      const key = ipamKeys.address(vm.network.range, vm.network.address);
      const held = await getItem<AddressItem>(deps.db, key);
      // Gone already, or (records repaired by hand) someone else's: only the VM's field goes.
      if (held?.vmId !== vm.id) continue;
      // Only its holder gives an address back.
      items.push({
        Delete: deleteOf(deps.db.table, key, { expr: "vmId = :vm", values: { ":vm": vm.id } }),
      });
    }
    return Object.keys(vmRemove).length ? { items, vmRemove } : undefined;
  };

  return {
    name,
    runsIn: "control-plane",
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    hooks: { start_request: request, claim, release },
  };
}
