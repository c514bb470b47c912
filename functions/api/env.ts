import type { Principal } from "../../shared/auth/principal.ts";
import type { Logger } from "../../shared/log.ts";

/** Hono context variables set by the middleware. */
export type ApiEnv = {
  Variables: {
    requestId: string;
    principal: Principal;
    log: Logger;
    /** What the request does, for `request` plugins (e.g. `vm.reboot`); derived from the route when unset. */
    action?: string;
    /**
     * The project the request acted on, when it is not the caller's own (an admin's request on another
     * project's VM, cluster or listing). Set by routes (`actOn`) once the target is known and allowed;
     * `request` plugins file the request under it.
     */
    project?: string;
  };
};
