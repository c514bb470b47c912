/**
 * The driver's disk images on a host: base images `<dir>/<image>.qcow2` (put there by whoever
 * provisions the host) and one qcow2 overlay per VM, `<dir>/overlays/usher-<vmId>.qcow2`, which the
 * driver creates, moves with a migration and removes with the domain.
 */
import { DriverError, type DriverErrorCode, DriverErrorCode as E } from "../errors.ts";
import * as cmd from "./commands.ts";
import { codeOf, commandError } from "./errors.ts";
import type { VirshHost } from "./host.ts";
import { assertAbsPath, assertFileName, assertPathUnder, assertVmId } from "./validate.ts";
import type { DomainInfo } from "./xml.ts";

export const DEFAULT_IMAGES_DIR = "/var/lib/libvirt/images/usher";

export class Images {
  readonly dir: string;
  readonly overlayDir: string;

  constructor(dir: string = DEFAULT_IMAGES_DIR) {
    this.dir = assertAbsPath(dir, "images directory");
    this.overlayDir = `${this.dir}/overlays`;
  }

  basePath(image: string): string {
    return `${this.dir}/${assertFileName(image, "image name")}.qcow2`;
  }

  overlayPath(vmId: string): string {
    return `${this.overlayDir}/usher-${assertVmId(vmId)}.qcow2`;
  }

  /** The domain's disks that the driver made (its overlays). */
  ownDisks(d: DomainInfo): string[] {
    return d.disks.filter((p) => p.startsWith(`${this.overlayDir}/usher-`));
  }

  /**
   * Creates the overlay `path` over `image` on `host` (replacing a file a crashed attempt left:
   * no domain uses it yet). `image_not_found` when the base image is not there.
   */
  async createOverlay(
    host: VirshHost,
    path: string,
    image: string,
    opts: { signal?: AbortSignal | undefined; fallback?: DriverErrorCode } = {},
  ): Promise<void> {
    assertPathUnder(path, this.overlayDir, "overlay path");
    await host.ok(cmd.mkdirP(this.overlayDir), { signal: opts.signal });
    const r = await host.exec(cmd.qemuImgCreate(this.basePath(image), path), { signal: opts.signal });
    if (r.code === 0) return;
    if (codeOf(r.stderr) === E.imageNotFound || /No such file/.test(r.stderr)) {
      throw new DriverError(E.imageNotFound, `image ${image} is not on host ${host.hostId}`);
    }
    throw commandError("qemu-img create", host.hostId, r.stderr, opts.fallback);
  }
}
