/** IPv4 arithmetic for the IP manager (pure): dotted quads as 32-bit unsigned integers, CIDR blocks. */

const QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** `10.0.0.5` → 167772165; throws on anything but a canonical dotted quad. */
export function ipToInt(address: string): number {
  if (!QUAD.test(address)) throw new Error(`not an IPv4 address: ${JSON.stringify(address)}`);
  return address.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export type Cidr = {
  /** The network address. */
  network: number;
  prefixLength: number;
  /** The broadcast address. */
  broadcast: number;
};

/** `10.0.0.0/24` → its network and broadcast; the address part must be the network itself. */
export function parseCidr(cidr: string): Cidr {
  const [address, bits, ...rest] = cidr.split("/");
  const prefixLength = Number(bits);
  if (rest.length || !address || !/^\d{1,2}$/.test(bits ?? "") || prefixLength > 32)
    throw new Error(`not an IPv4 CIDR block: ${JSON.stringify(cidr)}`);
  const size = 2 ** (32 - prefixLength);
  const network = ipToInt(address);
  if (network % size !== 0) throw new Error(`${cidr}: ${address} is not the network address of a /${bits}`);
  return { network, prefixLength, broadcast: network + size - 1 };
}
