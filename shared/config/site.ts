/**
 * The site configuration a Node process runs with: `usher.config.ts` (imported by each entry point,
 * so bundlers see it), or, when `USHER_CONFIG` names another file, that one. Only the Node entries of
 * the local stack and tests take a path; Workers and Lambda bundles always carry usher.config.ts.
 */
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { UsherConfig } from "../plugins/config.ts";

export async function loadSiteConfig(path: string | undefined, bundled: UsherConfig): Promise<UsherConfig> {
  if (!path) return bundled;
  const file = isAbsolute(path) ? path : resolve(process.cwd(), path);
  const mod = (await import(pathToFileURL(file).href)) as { default?: UsherConfig };
  if (!mod.default || !Array.isArray(mod.default.plugins))
    throw new Error(
      `USHER_CONFIG ${path}: its default export is not an Usher config (defineConfig({ plugins: [...] }))`,
    );
  return mod.default;
}
