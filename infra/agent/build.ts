/**
 * Builds the bridge agent into one file runnable with `node` (dist/usher-agent.mjs): everything it
 * imports is bundled, so a site installs one file, its config and the systemd unit.
 */

import { resolve } from "node:path";
import { build } from "esbuild";

const root = resolve(import.meta.dirname, "../..");
const outfile = process.argv[2] ?? resolve(root, "dist/usher-agent.mjs");

await build({
  entryPoints: [resolve(root, "bridge-agent/main.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  minify: false,
  sourcemap: false,
  legalComments: "eof",
  // ssh2 loads optional native speed-ups inside try/catch; the agent uses its pure JS code.
  external: ["cpu-features", "*.node"],
  // Bundled CommonJS dependencies (ssh2, the AWS SDK) use require, __dirname and __filename.
  banner: {
    js: [
      "import { createRequire as __usherRequire } from 'node:module';",
      "import { fileURLToPath as __usherPath } from 'node:url';",
      "import { dirname as __usherDirname } from 'node:path';",
      "const require = __usherRequire(import.meta.url);",
      "const __filename = __usherPath(import.meta.url);",
      "const __dirname = __usherDirname(__filename);",
    ].join(" "),
  },
  logLevel: "warning",
});
console.log(`built ${outfile}`);
