// Runs the host tools the image builder drives (apt-get, dpkg-deb, modinfo, ldd, mksquashfs).
// A failure names the command and carries what the tool printed, so a broken host explains itself.
import { execFile } from 'node:child_process';

export interface ToolOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kills the tool after this long (a hung download or mirror); defaults to 10 minutes. */
  timeoutMs?: number;
}

/** The tool's stdout; rejects with the command line and its output if it fails. */
export function runTool(file: string, args: readonly string[], options: ToolOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        cwd: options.cwd,
        env: options.env ?? process.env,
        timeout: options.timeoutMs ?? 600_000,
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        const output = `${stderr}${stdout}`.trim();
        const missing = (error as NodeJS.ErrnoException).code === 'ENOENT' ? ' (not installed? see scripts/setup-host.sh)' : '';
        reject(new Error(`${file} ${args.join(' ')} failed${missing}: ${error.message.split('\n')[0]}${output ? `\n${output}` : ''}`));
      },
    );
  });
}
