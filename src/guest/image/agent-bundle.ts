// The agent as one file (/usr/lib/kuasar/agent.mjs in the root image): esbuild bundles the
// compiled agent and everything it imports, except koffi, whose native part is loaded from its
// package directory next to the bundle.
import { access } from 'node:fs/promises';
import { build } from 'esbuild';

/** Packages the bundle leaves to node_modules next to it (native code cannot be bundled). */
export const EXTERNAL_PACKAGES = ['koffi'] as const;

/**
 * The bundled agent. Dependencies written as CommonJS call require(), which an ES module does not
 * have; the banner gives the bundle one. No source map and no build-time values: the same
 * sources give the same bytes.
 */
export async function bundleAgent(entry: string): Promise<Buffer> {
  await access(entry).catch(() => {
    throw new Error(`the agent entry ${entry} does not exist (npm run build compiles it to dist/src/guest/agent/main.js)`);
  });
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: [...EXTERNAL_PACKAGES],
    banner: {
      js: "import { createRequire as __kuasarCreateRequire } from 'node:module'; const require = __kuasarCreateRequire(import.meta.url);",
    },
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
  });
  const output = result.outputFiles[0];
  if (!output) throw new Error(`esbuild produced nothing for ${entry}`);
  return Buffer.from(output.contents);
}
