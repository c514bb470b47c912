/**
 * Pure text builders for the KVM test bed: each host's libvirt, sshd and ssh client configuration,
 * and the small diskless guest the tests boot. Nothing here touches the machine.
 */

/** Paths of one host's files, all under the bed's temp dir. */
export type HostPaths = {
  /** Bind-mounted over /run/libvirt (= /var/run/libvirt), /var/lib/libvirt, ... in the namespace. */
  run: string;
  lib: string;
  log: string;
  etc: string;
  cache: string;
  /** Bind-mounted over /etc/ssh/ssh_config in the namespace (the host's own ssh client config). */
  sshClientConfig: string;
  sshdConfig: string;
  hostKey: string;
  sshdPid: string;
  sshdLog: string;
  libvirtdPid: string;
  virtlogdPid: string;
  /** Output of the commands that start the daemons. */
  daemonLog: string;
};

/** Host-wide paths shared by every host of one bed. */
export type BedPaths = { clientKey: string; authorizedKeys: string; knownHosts: string };

/**
 * qemu.conf. libvirtd runs as root without a security driver or cgroups (none of which a container
 * gives it), and `namespaces = [ ]` keeps each qemu in its host's mount namespace, so the bed finds
 * (and ends) every qemu it started by that namespace. Incoming migrations listen on, and are
 * announced at, the host's own loopback address only.
 */
export function qemuConf(address: string): string {
  return [
    'user = "root"',
    'group = "root"',
    'security_driver = "none"',
    "cgroup_controllers = [ ]",
    "namespaces = [ ]",
    `migration_address = "${address}"`,
    // What the destination tells the source to connect to when `virsh migrate` has no --migrateuri
    // (else the machine's hostname, which need not resolve to this host's loopback address).
    `migration_host = "${address}"`,
    "",
  ].join("\n");
}

/** libvirtd.conf: unix sockets only (owned by root), warnings and errors to the host's log dir. */
export const LIBVIRTD_CONF = 'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n';
export const VIRTLOGD_CONF = 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n';
/** libvirt.conf (client side): a bare `virsh list` on the host talks to the host's own libvirtd. */
export const LIBVIRT_CONF = 'uri_default = "qemu:///system"\n';

/** sshd_config of one host: key logins for root only, on the host's own address and port. */
export function sshdConfig(o: { address: string; port: number; paths: HostPaths; bed: BedPaths }): string {
  return [
    `Port ${o.port}`,
    `ListenAddress ${o.address}`,
    `HostKey ${o.paths.hostKey}`,
    `AuthorizedKeysFile ${o.bed.authorizedKeys}`,
    `PidFile ${o.paths.sshdPid}`,
    "UsePAM no",
    "StrictModes no",
    "PermitRootLogin prohibit-password",
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UseDNS no",
    "PrintMotd no",
    // The agent keeps a connection per host with several channels; tests may open many logins at once.
    "MaxSessions 10",
    "MaxStartups 50:30:100",
    "Subsystem sftp internal-sftp",
    "",
  ].join("\n");
}

/**
 * The ssh client configuration inside a host's namespace: what `virsh migrate ... qemu+ssh://` on
 * that host uses to reach the other hosts. It logs in with the bed's client key and checks host keys
 * against the bed's known_hosts (never writing to root's ~/.ssh on the real machine).
 */
export function sshClientConfig(bed: BedPaths): string {
  return [
    "Host *",
    `  IdentityFile ${bed.clientKey}`,
    "  IdentitiesOnly yes",
    `  UserKnownHostsFile ${bed.knownHosts}`,
    "  GlobalKnownHostsFile /dev/null",
    "  StrictHostKeyChecking yes",
    "  UpdateHostKeys no",
    "  CheckHostIP no",
    "  BatchMode yes",
    "  LogLevel ERROR",
    "",
  ].join("\n");
}

/** One known_hosts line pinning `publicKey` ("ssh-ed25519 AAAA...") for address:port. */
export function knownHostsLine(address: string, port: number, publicKey: string): string {
  const [type, key] = publicKey.trim().split(/\s+/);
  const host = port === 22 ? address : `[${address}]:${port}`;
  return `${host} ${type} ${key}`;
}

export type GuestOptions = {
  name: string;
  uuid: string;
  /** "kvm", or "qemu" (TCG) where /dev/kvm is missing. */
  domainType: "kvm" | "qemu";
  memoryMiB?: number;
};

/**
 * A diskless guest: 64 MiB, 1 vCPU, a pty serial console. With nothing to boot, SeaBIOS keeps it
 * running (retrying the boot), which is all lifecycle and migration checks need.
 */
export function disklessGuestXml(o: GuestOptions): string {
  return `<domain type='${o.domainType}'>
  <name>${o.name}</name>
  <uuid>${o.uuid}</uuid>
  <memory unit='MiB'>${o.memoryMiB ?? 64}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='pty'/>
    <console type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}
