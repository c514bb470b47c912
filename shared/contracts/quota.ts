/** A project's quota (the quotas plugin): its limits and what its VMs hold. */
import { z } from "zod";

export const QuotaUsage = z.object({
  vms: z.number().int(),
  vcpus: z.number().int(),
  memoryMiB: z.number().int(),
});
export type QuotaUsage = z.infer<typeof QuotaUsage>;

/** `GET /v1/quotas`: a project's own; an admin may name any project. */
export const Quota = z
  .object({
    project: z.string(),
    /** Null where the project has no limit. */
    limits: z.object({
      vms: z.number().int().nullable(),
      vcpus: z.number().int().nullable(),
      memoryMiB: z.number().int().nullable(),
    }),
    /** Held by the project's VMs that have a home host (running, paused, suspended or stopped). */
    used: QuotaUsage,
  })
  .meta({ id: "Quota" });
export type Quota = z.infer<typeof Quota>;

export const QuotaQuery = z.object({ project: z.string().min(1).max(64).optional() });
export type QuotaQuery = z.infer<typeof QuotaQuery>;
