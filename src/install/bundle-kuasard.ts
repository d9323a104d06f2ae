// Builds kuasard as it runs (`npm run build`, after tsc): its compiled modules and packages in
// one esbuild bundle, in dist/bundle/kuasard/. A resident daemon keeps the source text of every
// module it loaded (V8 compiles lazily from it) and a record per module: bundled, whitespace and
// comments out, kuasard with every kind enabled holds about 3 MB less heap after GC (measured:
// 12.9 -> 10.0 MB; private memory 20.3-21.6 -> 17.5-18.7 MiB). Names are kept, so stack traces
// in its log still say which function failed.
//
// The dynamic imports (each kind's modules, its checks, metrics, the admin socket) stay lazy as
// chunks of their own. The wasm kind's worker thread is a second, CommonJS, bundle beside them:
// worker-pool.ts starts it by its name next to its own chunk; so is the wasm kind's rewriter
// thread (an ES module, rewriter.ts starts it the same way). koffi stays a package (it loads a
// native addon by its path in node_modules), and so does binaryen (15 MB, loaded only by the
// rewriter thread: a copy in the bundle would only double it on disk). Native programs are found by native-programs.ts,
// which sits two levels below dist in both trees.
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions } from 'esbuild';
import { KUASARD_BUNDLE_DIR } from './kuasard-node.js';

const compiled = (path: string): string => fileURLToPath(new URL(`../${path}`, import.meta.url));

/** ES modules bundled by esbuild call require() for the CommonJS packages among them (grpc-js): give them Node's. */
const REQUIRE_SHIM =
  "import { createRequire as kuasarCreateRequire } from 'node:module'; const require = kuasarCreateRequire(import.meta.url);";

const common: BuildOptions = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  minifyWhitespace: true,
  minifySyntax: true,
  external: ['koffi', 'binaryen'],
  outdir: KUASARD_BUNDLE_DIR,
  logLevel: 'warning',
};

await rm(KUASARD_BUNDLE_DIR, { recursive: true, force: true });
await build({
  ...common,
  entryPoints: [compiled('cli/kuasard.js')],
  format: 'esm',
  splitting: true,
  banner: { js: REQUIRE_SHIM },
});
await build({
  ...common,
  entryPoints: [compiled('kinds/wasm/instance-worker.cjs')],
  format: 'cjs',
  outExtension: { '.js': '.cjs' },
});
await build({
  ...common,
  entryPoints: [compiled('kinds/wasm/rewriter-thread.js')],
  format: 'esm',
  banner: { js: REQUIRE_SHIM },
});
