/**
 * A and PTR records of VMs, kept by RFC 2136 dynamic updates signed with TSIG (RFC 8945).
 *
 * Adding a VM's records replaces the A RRset of `name.zone` and the PTR RRset of its in-addr.arpa
 * name; removing deletes exactly those records (the RR, not the whole RRset), so a name or address
 * that has meanwhile passed to another VM keeps that VM's record. Both are idempotent. Each zone is
 * one UPDATE message, forward first: a failure after the forward update leaves a state that a retry
 * completes.
 */
import { randomInt } from "node:crypto";
import { DnsUpdaterConfig } from "./config.ts";
import { DnsError, DnsErrorCode } from "./errors.ts";
import { fqdn, hostLabel, inZone, ipv4Octets, reverseName, reverseZoneName, zoneName } from "./names.ts";
import { tcpExchange, udpExchange } from "./transport.ts";
import { signMessage, type TsigKey, verifyResponse } from "./tsig.ts";
import {
  addRr,
  aRdata,
  decodeResponse,
  deleteRr,
  deleteRrset,
  encodeUpdate,
  MAX_UDP_MESSAGE,
  OPCODE_UPDATE,
  ptrRdata,
  type Rr,
  RrType,
  rrsetAbsent,
} from "./wire.ts";

/**
 * One VM's records: `name.zone` A `ipv4`, and `ipv4`'s in-addr.arpa name PTR `name.zone`. With
 * `subdomain` (one label; Usher puts the project there) the name is `name.subdomain.zone`.
 */
export type VmRecords = {
  zone: string;
  reverseZone: string;
  name: string;
  subdomain?: string | undefined;
  ipv4: string;
};
export type CallOptions = { signal?: AbortSignal };

/** One UPDATE message's content, before it gets an ID and a signature. */
export type UpdatePlan = { zone: string; prerequisites: Rr[]; updates: Rr[] };

export interface DnsUpdater {
  /** Adds (or replaces) the VM's A and PTR records. */
  addVmRecords(records: VmRecords & { ttl: number }, opts?: CallOptions): Promise<void>;
  /** Removes the VM's A and PTR records; records that are absent are no error. */
  removeVmRecords(records: VmRecords, opts?: CallOptions): Promise<void>;
}

const MAX_TTL = 2 ** 31 - 1;

/** Validates everything a VM's records are made of; throws DnsError before anything is sent. */
function resolveNames(r: VmRecords) {
  const zone = zoneName(r.zone);
  const reverseZone = reverseZoneName(r.reverseZone);
  const label = hostLabel(r.name);
  const host = fqdn(r.subdomain === undefined ? label : `${label}.${hostLabel(r.subdomain)}`, zone);
  const octets = ipv4Octets(r.ipv4);
  const ptrName = reverseName(octets);
  if (!inZone(ptrName, reverseZone)) {
    throw new DnsError(DnsErrorCode.notZone, `${r.ipv4} is outside reverse zone ${reverseZone}`);
  }
  return { zone, reverseZone, host, octets, ptrName };
}

/** The two updates that add a VM's records (pure: validated names in, messages' content out). */
export function planAddVmRecords(r: VmRecords & { ttl: number }): UpdatePlan[] {
  if (!Number.isInteger(r.ttl) || r.ttl < 0 || r.ttl > MAX_TTL) {
    throw new DnsError(DnsErrorCode.invalidTtl, `TTL ${r.ttl} is not 0 to ${MAX_TTL} seconds`);
  }
  const n = resolveNames(r);
  // No CNAME at the name: a server silently ignores an A or PTR added beside one (RFC 2136 §3.4.2.2),
  // so without this prerequisite the update would succeed and add nothing.
  return [
    {
      zone: n.zone,
      prerequisites: [rrsetAbsent(n.host, RrType.CNAME)],
      updates: [deleteRrset(n.host, RrType.A), addRr(n.host, RrType.A, r.ttl, aRdata(n.octets))],
    },
    {
      zone: n.reverseZone,
      prerequisites: [rrsetAbsent(n.ptrName, RrType.CNAME)],
      updates: [deleteRrset(n.ptrName, RrType.PTR), addRr(n.ptrName, RrType.PTR, r.ttl, ptrRdata(n.host))],
    },
  ];
}

/** The two updates that remove a VM's records. */
export function planRemoveVmRecords(r: VmRecords): UpdatePlan[] {
  const n = resolveNames(r);
  return [
    { zone: n.zone, prerequisites: [], updates: [deleteRr(n.host, RrType.A, aRdata(n.octets))] },
    { zone: n.reverseZone, prerequisites: [], updates: [deleteRr(n.ptrName, RrType.PTR, ptrRdata(n.host))] },
  ];
}

const RCODE_ERRORS: Record<number, [DnsErrorCode, string]> = {
  1: [DnsErrorCode.rejected, "FORMERR: the server could not parse the update"],
  2: [DnsErrorCode.serverFailure, "SERVFAIL"],
  3: [DnsErrorCode.prerequisiteFailed, "NXDOMAIN: a name that should exist does not"],
  4: [DnsErrorCode.rejected, "NOTIMP: the server does not implement dynamic update"],
  5: [DnsErrorCode.refused, "REFUSED: the server's policy forbids this update"],
  6: [DnsErrorCode.prerequisiteFailed, "YXDOMAIN: a name that should not exist does"],
  7: [DnsErrorCode.prerequisiteFailed, "YXRRSET: the name has a CNAME, so no A or PTR can be added"],
  8: [DnsErrorCode.prerequisiteFailed, "NXRRSET: an RRset that should exist does not"],
  9: [DnsErrorCode.notAuth, "NOTAUTH: the server is not authoritative for the zone"],
  10: [DnsErrorCode.notZone, "NOTZONE: a name is outside the zone"],
};

/**
 * An updater that signs with the configured key. The config is checked here (a ZodError for bad
 * options); each call's names are checked before anything is sent.
 */
export function createDnsUpdater(config: DnsUpdaterConfig, clock: () => number = Date.now): DnsUpdater {
  const { server, tsig, timeoutMs } = DnsUpdaterConfig.parse({
    server: config.server,
    tsig: config.tsig,
    timeoutMs: config.timeoutMs,
  });
  const key: TsigKey = { name: tsig.name, secret: Buffer.from(tsig.secretBase64, "base64") };
  const seconds = () => Math.floor(clock() / 1000);

  async function send(plan: UpdatePlan, signal: AbortSignal | undefined): Promise<void> {
    const unsigned = encodeUpdate({ ...plan, id: randomInt(0, 0x10000) });
    let tcp = false;
    for (;;) {
      // Signed for each exchange, so the TCP retry after a truncated answer has a fresh time.
      const { wire, mac } = signMessage(unsigned, key, { timeSigned: seconds() });
      tcp ||= wire.length > MAX_UDP_MESSAGE;
      const exchange = tcp ? tcpExchange : udpExchange;
      const response = decodeResponse(await exchange(server, wire, { timeoutMs, signal }));
      if (response.truncated && !tcp) {
        tcp = true;
        continue;
      }
      if (response.opcode !== OPCODE_UPDATE) {
        throw new DnsError(DnsErrorCode.badResponse, `response has opcode ${response.opcode}, not UPDATE`);
      }
      verifyResponse(response, key, mac, seconds());
      const failure = RCODE_ERRORS[response.rcode];
      if (failure) throw new DnsError(failure[0], `update of zone ${plan.zone}: ${failure[1]}`);
      if (response.rcode !== 0) {
        throw new DnsError(DnsErrorCode.rejected, `update of zone ${plan.zone}: RCODE ${response.rcode}`);
      }
      return;
    }
  }

  async function run(plans: UpdatePlan[], opts: CallOptions | undefined): Promise<void> {
    for (const plan of plans) await send(plan, opts?.signal);
  }

  return {
    addVmRecords: async (records, opts) => run(planAddVmRecords(records), opts),
    removeVmRecords: async (records, opts) => run(planRemoveVmRecords(records), opts),
  };
}
