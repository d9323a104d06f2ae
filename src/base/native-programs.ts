// Where the programs built from native/ are (`npm run build:native` puts them in dist/native).
// Resolved from this module's own place, two levels below dist both in the compiled tree
// (dist/src/base/) and in kuasard's bundle (dist/bundle/kuasard/, see src/install/bundle-kuasard.ts):
// the one module of kuasard that names the directory.
import { fileURLToPath } from 'node:url';

/** The path of the native program `name` (e.g. "fd-keeper"). */
export const nativeProgram = (name: string): string => fileURLToPath(new URL(`../../native/${name}`, import.meta.url));
