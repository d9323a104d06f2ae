// Runs host tools (ctr, umoci, ip, gcc...) for the development environment. Failures carry the
// command line and what the tool printed, so a broken set-up explains itself.
import { execFile } from 'node:child_process';

export interface RunOptions {
  cwd?: string;
  /** Kills the tool after this long; defaults to 60 s. */
  timeoutMs?: number;
}

export async function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (error) {
          const output = `${stderr}${stdout}`.trim();
          reject(new Error(`${file} ${args.join(' ')} failed: ${error.message.split('\n')[0]}${output ? `\n${output}` : ''}`));
        } else {
          resolve(stdout);
        }
      },
    );
  });
}
