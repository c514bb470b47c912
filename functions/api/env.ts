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
  };
};
