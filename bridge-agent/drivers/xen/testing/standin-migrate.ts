/**
 * `xl migrate` of the stand-in (xl-standin.ts): the sender's and receiver's messages in the order real
 * xl prints them (tools/xl/xl_migrate.c, with the receiver's stderr coming back through ssh), and the
 * domain moved between the two hosts' state files as xl does it: received as `<name>--incoming`
 * (paused), the sender's copy renamed `<name>--migratedaway` once the target has acknowledged, the
 * target's renamed back and unpaused (unless `-p`), then the sender's destroyed. The target host is
 * found in XL_STANDIN_PEERS (address → state file) instead of over ssh. Killed before the end (the
 * driver aborting), it undoes the receiver's half, as xl migrate-receive does when its stream breaks.
 */
import { setTimeout as delay } from "node:timers/promises";
import { domainFromConfig, Exit, getopt, HOST, mustFind, withState } from "./standin-state.ts";

const err = (s: string) => process.stderr.write(s);
const step = () => delay(HOST.stepMs);
const TRUNCATED = "libxl: error: libxl_utils.c:525:libxl_read_exactly: file/stream truncated reading";

export async function migrate(args: string[], stateFile: string): Promise<void> {
  const { flags, rest } = getopt("migrate", args, "FC:s:epD", 2);
  const [q = "", host = ""] = rest;
  const peers = JSON.parse(process.env.XL_STANDIN_PEERS ?? "{}") as Record<string, string>;
  const src = withState(stateFile, (s) => mustFind(s, q));
  const target = peers[host];
  if (!target || target === stateFile) {
    throw new Exit(
      1,
      `ssh: Could not resolve hostname ${host}: Name or service not known\n` +
        `${TRUNCATED} banner from migration receiver stream\n` +
        `migration transport process [${process.pid + 1}] exited with error status 255\n`,
    );
  }
  const name = src.name;
  const incoming = `${name}--incoming`;
  const type = src.type.toUpperCase();
  const len = JSON.stringify(src.config).length;
  let renamedAway = false;
  const undo = () => {
    withState(target, (t) => {
      t.domains = t.domains.filter((d) => !(d.uuid === src.uuid && d.name === incoming));
    });
    if (renamedAway) {
      withState(stateFile, (s) => {
        const d = s.domains.find((x) => x.uuid === src.uuid);
        if (d) d.name = name;
      });
    }
  };
  process.once("SIGTERM", () => {
    undo();
    process.exit(143);
  });

  err(`Saving to migration stream new xl format (info 0x3/0x0/${len})\n`);
  err(`Loading new save file <incoming migration stream> (new xl fmt info 0x3/0x0/${len})\n`);
  err(" Savefile contains xl domain config in JSON format\nParsing config from <saved>\n");
  await step();
  try {
    withState(target, (t) => {
      if (t.domains.some((d) => d.name === name)) {
        throw new Exit(
          3,
          `libxl: error: libxl_domain.c:88:libxl__domain_rename: Domain with name "${name}" already exists.\n`,
        );
      }
      domainFromConfig(t, { ...src.config, name: incoming, uuid: src.uuid }, true);
    });
  } catch (e) {
    if (!(e instanceof Exit)) throw e;
    throw new Exit(
      1,
      `${e.message}migration target: Domain creation failed (code -3).\n` +
        `${TRUNCATED} ready message from migration receiver stream\nMigration failed, resuming at sender.\n`,
    );
  }
  err(`xc: info: Saving domain ${src.domid}, type x86 ${type}\n`);
  await step();
  err(`xc: info: Found x86 ${type} domain from Xen 4.17\nxc: info: Restoring domain\n`);
  for (let i = 0; i < 3; i++) await step(); // the memory copy
  err("xc: info: Restore successful\nxc: info: XenStore: mfn 0xfeffc, dom 0, evt 1\n");
  err("xc: info: Console: mfn 0xfefff, dom 0, evt 2\n");
  err("migration target: Transfer complete, requesting permission to start domain.\n");
  await step();
  err("migration sender: Target has acknowledged transfer.\n");
  withState(stateFile, (s) => {
    const d = s.domains.find((x) => x.uuid === src.uuid);
    if (d) d.name = `${name}--migratedaway`;
  });
  renamedAway = true;
  err("migration sender: Giving target permission to start.\n");
  await step();
  withState(target, (t) => {
    const d = t.domains.find((x) => x.uuid === src.uuid && x.name === incoming);
    if (!d) return;
    d.name = name;
    d.pauseCount = flags.has("p") ? 1 : 0;
  });
  err("migration target: Got permission, starting domain.\n");
  err("migration target: Domain started successsfully.\n"); // sic: xl's own spelling
  withState(stateFile, (s) => {
    s.domains = s.domains.filter((x) => x.uuid !== src.uuid);
  });
  process.removeAllListeners("SIGTERM");
  err("migration sender: Target reports successful startup.\n");
  err("Migration successful.\n");
}
