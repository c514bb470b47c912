/**
 * This site's policy: the plugins that run, in order, with their options, and the scheduler's
 * policy choices. Typed: a plugin that does not exist, or options it does not take, fail `npm run
 * typecheck`. See docs/plugins.md for every event and how to write a plugin.
 */
import { defineConfig } from "./shared/plugins/config.ts";

export default defineConfig({
  plugins: [],
});
