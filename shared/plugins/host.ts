/**
 * Runs a config's plugins: each hook in config order, each call under its plugin's time limit.
 * Built once per process (`createControlPlane`) and reached as `deps.plugins`.
 */
import { VmSpec } from "../contracts/vm.ts";
import { ErrorCode, UsherError } from "../errors.ts";
import type { Deps } from "../services/context.ts";
import { checkConfig, DEFAULT_NOTIFICATIONS, DEFAULT_TIMEOUT_MS, type UsherConfig } from "./config.ts";
import type {
  ActionRequest,
  ClaimBatch,
  Contribution,
  Notice,
  NotifyEvent,
  Plugin,
  PluginContext,
  ReleaseBatch,
  RequestEvent,
  RequestRecord,
} from "./types.ts";

export class PluginTimeoutError extends UsherError {
  override name = "PluginTimeoutError";
}

/** Calls `fn` with an AbortSignal that fires after `ms`; rejects with a timeout when it does. */
export async function withTimeout<T>(
  ms: number,
  what: string,
  fn: (signal: AbortSignal) => T | Promise<T>,
): Promise<T> {
  const ac = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ac.abort();
      reject(new PluginTimeoutError(ErrorCode.pluginFailed, `${what} took longer than ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([Promise.resolve().then(() => fn(ac.signal)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export class Plugins {
  readonly config: UsherConfig;
  readonly notifications: Required<NonNullable<UsherConfig["notifications"]>>;
  private readonly byName: Map<string, Plugin>;

  constructor(config: UsherConfig = { plugins: [] }) {
    const problems = checkConfig(config);
    if (problems.length) throw new Error(`usher.config: ${problems.join("; ")}`);
    this.config = config;
    this.byName = new Map(config.plugins.map((p) => [p.name, p]));
    this.notifications = { ...DEFAULT_NOTIFICATIONS, ...stripUndefined(config.notifications ?? {}) };
  }

  get list(): readonly Plugin[] {
    return this.config.plugins;
  }

  get(name: string): Plugin | undefined {
    return this.byName.get(name);
  }

  /** Names of the plugins that handle a notification, in config order. */
  subscribers(event: NotifyEvent): string[] {
    return this.config.plugins.filter((p) => p.hooks[event]).map((p) => p.name);
  }

  private call<T>(deps: Deps, plugin: Plugin, hook: string, fn: (ctx: PluginContext) => T | Promise<T>) {
    const ms = plugin.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const log = deps.log.child({ plugin: plugin.name, hook });
    return withTimeout(ms, `plugin ${plugin.name} (${hook})`, (signal) => fn({ deps, log, signal }));
  }

  /**
   * Runs `<action>_request` hooks in order; each sees the previous ones' adjustments. A veto stops
   * the request (`vetoed`, the plugin's reason); a hook that throws or times out refuses it too
   * (`plugin_failed`): site policy fails closed. Returns the request as adjusted, spec re-validated.
   */
  async beforeAction(deps: Deps, req: ActionRequest): Promise<ActionRequest> {
    const event: RequestEvent = `${req.action}_request`;
    let current = req;
    for (const plugin of this.config.plugins) {
      const hook = plugin.hooks[event];
      if (!hook) continue;
      let verdict: Awaited<ReturnType<typeof hook>>;
      try {
        verdict = await this.call(deps, plugin, event, (ctx) => hook(ctx, current));
      } catch (err) {
        if (err instanceof UsherError && err.code === ErrorCode.vetoed) {
          // A hook may throw its veto instead of returning it: it still names the plugin.
          throw new UsherError(ErrorCode.vetoed, err.message, {
            cause: err,
            details: { plugin: plugin.name, ...(err.details ?? {}) },
          });
        }
        deps.log.error("request plugin failed; request refused", { plugin: plugin.name, event, err });
        throw new UsherError(
          ErrorCode.pluginFailed,
          `policy plugin ${plugin.name} could not decide: ${(err as Error).message}`,
          {
            cause: err,
            details: { plugin: plugin.name },
          },
        );
      }
      if (!verdict) continue;
      if ("veto" in verdict) {
        throw new UsherError(ErrorCode.vetoed, verdict.veto, {
          details: { plugin: plugin.name, ...(verdict.details ?? {}) },
        });
      }
      const spec = verdict.spec ? VmSpec.safeParse(verdict.spec) : undefined;
      if (spec && !spec.success)
        throw new UsherError(ErrorCode.pluginFailed, `plugin ${plugin.name} produced an invalid spec`, {
          details: {
            plugin: plugin.name,
            issues: spec.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`),
          },
        });
      current = {
        ...current,
        ...(spec ? { spec: spec.data } : {}),
        ...(verdict.args ? { args: { ...current.args, ...verdict.args } } : {}),
      };
    }
    return current;
  }

  /** Delivers one notification to one plugin (the outbox calls this and retries on a throw). */
  async notify(deps: Deps, pluginName: string, notice: Notice): Promise<void> {
    const plugin = this.byName.get(pluginName);
    const hook = plugin?.hooks[notice.event];
    if (!plugin || !hook) return; // removed from the config since: nothing to deliver to
    await this.call(deps, plugin, notice.event, (ctx) => hook(ctx, notice));
  }

  /** Tells every `request` hook about a finished API request. Failures are logged, retried twice, never thrown. */
  async afterRequest(deps: Deps, rec: RequestRecord): Promise<void> {
    for (const plugin of this.config.plugins) {
      const hook = plugin.hooks.request;
      if (!hook) continue;
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          await this.call(deps, plugin, "request", (ctx) => hook(ctx, rec));
          break;
        } catch (err) {
          deps.log.warn("request plugin failed", {
            plugin: plugin.name,
            requestId: rec.requestId,
            attempt,
            err,
          });
          if (attempt < 2) await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
        }
      }
    }
  }

  /** Runs every `sweep` hook; a failing one is logged and the others still run. */
  async sweep(deps: Deps): Promise<void> {
    for (const plugin of this.config.plugins) {
      const hook = plugin.hooks.sweep;
      if (!hook) continue;
      try {
        await this.call(deps, plugin, "sweep", (ctx) => hook(ctx));
      } catch (err) {
        deps.log.error("plugin sweep failed", { plugin: plugin.name, err });
      }
    }
  }

  /** Every `claim` hook's contribution to a claim transaction, in config order. A throw fails the claim. */
  async claim(deps: Deps, batch: ClaimBatch): Promise<Contribution[]> {
    const out: Contribution[] = [];
    for (const plugin of this.config.plugins) {
      const hook = plugin.hooks.claim;
      if (hook) keep(out, await this.call(deps, plugin, "claim", (ctx) => hook(ctx, batch)));
    }
    return out;
  }

  /** Every `release` hook's contribution to a release transaction, in config order. */
  async release(deps: Deps, batch: ReleaseBatch): Promise<Contribution[]> {
    const out: Contribution[] = [];
    for (const plugin of this.config.plugins) {
      const hook = plugin.hooks.release;
      if (hook) keep(out, await this.call(deps, plugin, "release", (ctx) => hook(ctx, batch)));
    }
    return out;
  }
}

function keep(out: Contribution[], c: Contribution | undefined): void {
  if (c && (c.items.length || c.vmSet || c.vmRemove)) out.push(c);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
