export * from "./envelopes.ts";
export * from "./keys.ts";
