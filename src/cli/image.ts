// `kuasar image build`: builds the vmm kind's guest image (src/guest/image/build.ts), showing
// its stages as a bar on a terminal and as plain lines otherwise, then the files and how long
// it took.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { DEFAULT_IMAGE_DIR, IMAGE_FILES } from '../guest/image/layout.js';

/** The compiled agent, from dist/src/cli/image.js. */
const DEFAULT_AGENT_ENTRY = resolve(dirname(fileURLToPath(import.meta.url)), '../guest/agent/main.js');

interface ImageBuildOptions {
  out: string;
  agentEntry: string;
  cache?: string;
  force?: boolean;
}

const mib = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

/** Adds `image build`; the builder is loaded only when it runs. */
export function registerImage(program: Command): void {
  const image = program.command('image').description("the vmm kind's guest image");
  image
    .command('build')
    .description("build the guest image (kernel, initramfs, root image) from this host's node, runc and busybox (root)")
    .option('--out <dir>', 'image directory', DEFAULT_IMAGE_DIR)
    .option('--agent-entry <file>', 'the compiled guest agent to bundle', DEFAULT_AGENT_ENTRY)
    .option('--cache <dir>', 'where the kernel package is downloaded to and kept (default /var/cache/kuasar)')
    .option('--force', 'build even if the image there is up to date')
    .action(async (opts: ImageBuildOptions) => {
      const { buildImage, BUILD_STAGES } = await import('../guest/image/build.js');
      const say = (line: string) => process.stdout.write(`${line}\n`);
      const bar = process.stdout.isTTY
        ? new cliProgress.SingleBar(
            { format: ' [{bar}] {value}/{total} {stage}', barsize: 24, hideCursor: false, gracefulExit: false, clearOnComplete: true },
            cliProgress.Presets.shades_classic,
          )
        : undefined;
      bar?.start(BUILD_STAGES.length, 0, { stage: '' });
      // On a terminal the bar shows the running stage and the finished ones are listed after it.
      const finished: string[] = [];
      let result: Awaited<ReturnType<typeof buildImage>>;
      try {
        result = await buildImage({
          outDir: resolve(opts.out),
          agentEntry: resolve(opts.agentEntry),
          cacheDir: opts.cache,
          force: opts.force === true,
          onStage: (event) => {
            if (event.state === 'begin') return bar?.update({ stage: event.stage });
            const took = event.durationMs === undefined ? '' : ` (${(event.durationMs / 1000).toFixed(1)} s)`;
            const line = `${event.stage}${event.detail ? `: ${event.detail}` : ''}${took}`;
            if (bar) {
              bar.increment(1);
              finished.push(line);
            } else {
              say(line);
            }
          },
        });
      } finally {
        bar?.stop();
        for (const line of finished) say(line);
      }
      const seconds = (result.durationMs / 1000).toFixed(1);
      say(result.upToDate ? `${result.outDir} is up to date (checked in ${seconds} s)` : `built ${result.outDir} in ${seconds} s`);
      say(`  kernel ${result.manifest.kernelRelease} (${result.manifest.kernelPackage})`);
      for (const name of Object.values(IMAGE_FILES)) {
        const file = result.manifest.files[name];
        if (file) say(`  ${name.padEnd(12)} ${mib(file.size).padStart(10)}  sha256 ${file.sha256.slice(0, 16)}`);
      }
    });
}
