/**
 * The example plugin of docs/plugins.md: POSTs chosen notifications as JSON to a URL, signed with
 * HMAC-SHA256 so the receiver can check they came from this deployment. A receiver that is down or
 * answers non-2xx makes the hook throw, and the outbox retries it with a growing delay; the
 * operation that raised the notification never waits for it.
 */
import type { Notice, NotifyEvent, Plugin } from "../types.ts";

export type WebhookOptions = {
  /** Unique per config; defaults to `webhook`. */
  name?: string;
  url: string;
  /** The notifications to send. */
  events: readonly NotifyEvent[];
  /** Shared secret for the `x-usher-signature: sha256=<hex>` header. */
  secret: string;
  timeoutMs?: number;
};

export function webhook(o: WebhookOptions): Plugin {
  const url = new URL(o.url); // a bad URL fails at start-up, not at the first event
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new Error(`webhook: ${url.protocol} URLs cannot be posted to; use https:`);
  if (!o.secret) throw new Error("webhook: a secret is required");
  const key = crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(o.secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const send = async (ctx: { signal: AbortSignal }, notice: Notice) => {
    const body = JSON.stringify(notice);
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await key, new TextEncoder().encode(body)));
    const res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-usher-event": notice.event,
        // The same on every retry of this notification: receivers de-duplicate with it. One logged
        // event can raise several notifications (a start's success is `start` and `state_change`),
        // so the event id alone would make a receiver drop all but the first.
        "x-usher-delivery": `${notice.eventId}:${notice.event}`,
        "x-usher-signature": `sha256=${Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("")}`,
      },
      body,
      signal: ctx.signal,
    });
    // The answer's body is not wanted; undici holds the connection until a body is read or cancelled.
    await res.body?.cancel();
    if (!res.ok) throw new Error(`webhook ${url.host} answered ${res.status}`);
  };
  return {
    name: o.name ?? "webhook",
    runsIn: "control-plane",
    timeoutMs: o.timeoutMs ?? 5000,
    hooks: Object.fromEntries(o.events.map((e) => [e, send])),
  };
}
