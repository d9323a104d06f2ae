// The shared libraries a host binary needs (node, runc), so the root image can hold them at the
// paths the binary's loader looks at.
import { runTool } from './tools.js';

/**
 * The absolute paths in `ldd` output: each resolved library and the loader itself. The vDSO has
 * no file and is left out; a library ldd cannot find is an error (the image would not run).
 */
export function parseLddOutput(output: string): string[] {
  const paths: string[] = [];
  for (const line of output.split('\n').map((l) => l.trim())) {
    if (line === '') continue;
    if (line.includes('=> not found')) throw new Error(`missing shared library: ${line}`);
    const resolved = /=>\s*(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(line) ?? /^(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(line);
    if (resolved) paths.push(resolved[1]!);
  }
  return paths;
}

/** The libraries `binary` loads; an error if it is not dynamically linked. */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const libs = parseLddOutput(await runTool('ldd', [binary]));
  if (libs.length === 0) throw new Error(`${binary}: ldd names no libraries`);
  return libs;
}

/** Whether `binary` is statically linked (ldd says so and exits non-zero). */
export async function isStaticBinary(binary: string): Promise<boolean> {
  try {
    await runTool('ldd', [binary]);
    return false;
  } catch (err) {
    return /not a dynamic executable|statically linked/.test((err as Error).message);
  }
}
