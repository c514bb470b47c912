import type { Role } from "../contracts/common.ts";

/** Who is calling, from a verified token. */
export type Principal = { subject: string; project: string; roles: readonly Role[] };

export const isAdmin = (p: Principal) => p.roles.includes("admin");
export const isOperator = (p: Principal) => p.roles.includes("admin") || p.roles.includes("operator");
