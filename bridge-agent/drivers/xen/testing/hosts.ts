/**
 * Xen hosts for tests, on this machine: Xen cannot run here, so each "host" is a `LocalRunner` whose
 * PATH starts with a folder holding `xl` → the stand-in (xl-standin.ts), with its own state file and
 * state folder. The driver under test is the real `XenDriver`, unaware of the stand-in. The stand-in
 * is bundled to one .mjs first: node then starts it in ~50 ms instead of ~200 ms for the .ts sources.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildSync } from "esbuild";
import type { MigrationTarget } from "../../../../shared/contracts/index.ts";
import { LocalRunner } from "../../../transport/local.ts";
import { XenDriver, type XenDriverOptions } from "../xen.ts";

const STANDIN = new URL("./xl-standin.ts", import.meta.url).pathname;

export type StandinHost = {
  id: string;
  /** What `xl migrate` is given to reach this host. */
  address: string;
  /** The stand-in's record of the host's domains. */
  stateFile: string;
  /** The driver's `stateDir` on this host. */
  stateDir: string;
  runner: LocalRunner;
  driver: XenDriver;
};

export type StandinHosts = {
  dir: string;
  hosts: Map<string, StandinHost>;
  host(id: string): StandinHost;
  target(id: string): MigrationTarget;
  /** Closes the drivers and removes every file. */
  close(): Promise<void>;
};

export type StandinOptions = {
  ids?: string[];
  /** Extra stand-in settings (XL_STANDIN_*) for every host, or per host id. */
  env?: Record<string, string>;
  envOf?: Record<string, Record<string, string>>;
  driver?: Partial<XenDriverOptions>;
};

export function makeStandinHosts(opts: StandinOptions = {}): StandinHosts {
  const dir = mkdtempSync(join(tmpdir(), "usher-xen-"));
  const bin = join(dir, "bin");
  mkdirSync(bin);
  const bundle = join(bin, "xl-standin.mjs");
  buildSync({
    entryPoints: [STANDIN],
    bundle: true,
    platform: "node",
    format: "esm",
    outfile: bundle,
    logLevel: "error",
  });
  writeFileSync(join(bin, "xl"), `#!/bin/sh\nexec '${process.execPath}' '${bundle}' "$@"\n`, { mode: 0o755 });
  const ids = opts.ids ?? ["xen-1", "xen-2"];
  const address = (id: string) => `${id}.standin.test`;
  const stateFile = (id: string) => join(dir, `${id}.state.json`);
  const peers = JSON.stringify(Object.fromEntries(ids.map((id) => [address(id), stateFile(id)])));
  const hosts = new Map<string, StandinHost>();
  for (const id of ids) {
    const stateDir = join(dir, id);
    mkdirSync(stateDir);
    const runner = new LocalRunner({
      hostId: id,
      env: {
        ...process.env,
        PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        XL_STANDIN_STATE: stateFile(id),
        XL_STANDIN_PEERS: peers,
        XL_STANDIN_STEP_MS: "5",
        ...opts.env,
        ...opts.envOf?.[id],
      },
    });
    const driver = new XenDriver({
      hostId: id,
      runner,
      stateDir,
      pollMs: 20,
      peers: (hostId) => {
        const peer = hosts.get(hostId);
        return peer && { runner: peer.runner, stateDir: peer.stateDir };
      },
      ...opts.driver,
    });
    hosts.set(id, { id, address: address(id), stateFile: stateFile(id), stateDir, runner, driver });
  }
  const host = (id: string) => {
    const h = hosts.get(id);
    if (!h) throw new Error(`no stand-in host ${id}`);
    return h;
  };
  return {
    dir,
    hosts,
    host,
    target: (id) => ({ hostId: id, address: host(id).address, kind: "xen" }),
    close: async () => {
      for (const h of hosts.values()) await h.driver.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
