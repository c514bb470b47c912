/** A VM's lease (the leases plugin): its lifetime, the warning before it ends, and renewal. */
import { z } from "zod";

export const LeaseExpiryAction = z.enum(["shutdown", "destroy"]);
export type LeaseExpiryAction = z.infer<typeof LeaseExpiryAction>;

/** `POST /v1/vms/{id}/lease`: push the end out by some seconds, or set it. */
export const RenewLease = z
  .union([
    z.strictObject({
      /** Added to the current expiry (to now when that has passed). */
      extendSeconds: z.number().int().min(1),
    }),
    z.strictObject({
      /** The new expiry; in the future, within the site's maximum from now. */
      expiresAt: z.iso.datetime({ offset: true }),
    }),
  ])
  .meta({ id: "RenewLease" });
export type RenewLease = z.infer<typeof RenewLease>;

export const Lease = z
  .object({
    vmId: z.string(),
    project: z.string(),
    expiresAt: z.string(),
    /** What expiry does to the VM, under the site's policy for its project. */
    onExpiry: LeaseExpiryAction,
    /** When the `lease.expiring` warning was written for this expiry. */
    warnedAt: z.string().nullable(),
    /** When the sweep found the lease expired. */
    expiredAt: z.string().nullable(),
    /** The operation expiry submitted (null before, or when the VM could not take the action). */
    expiryOperationId: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: "Lease" });
export type Lease = z.infer<typeof Lease>;
