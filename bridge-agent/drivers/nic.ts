/**
 * The NIC carrying a VM's address from the IP manager (pure, every driver): its MAC is derived from the
 * address, so the same address always comes with the same MAC (a DHCP reservation or ARP table keyed on
 * either stays right) and two VMs never share one while the control plane keeps addresses unique.
 */
import { DriverError, DriverErrorCode } from "./errors.ts";

const QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** A canonical dotted quad (no leading zeros, each byte 0..255). */
export const isIpv4 = (value: string): boolean => QUAD.test(value);

/**
 * `02:00:<the address's four bytes>`: locally administered (bit 1 of the first byte set) and unicast
 * (bit 0 clear), as xl-network-configuration(5) recommends for chosen MACs, outside every vendor's OUI.
 */
export function macForAddress(address: string): string {
  if (!isIpv4(address))
    throw new DriverError(DriverErrorCode.notSupported, `not an IPv4 address: ${JSON.stringify(address)}`);
  const hex = address.split(".").map((b) => Number(b).toString(16).padStart(2, "0"));
  return `02:00:${hex.join(":")}`;
}
