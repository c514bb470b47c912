export * from "./cluster.ts";
export * from "./common.ts";
export * from "./host.ts";
export * from "./messages.ts";
export * from "./vm.ts";
