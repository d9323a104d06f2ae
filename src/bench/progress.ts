// The progress display of a benchmark run, on stderr: one bar per phase on a terminal (with
// notes printed above it), plain lines every tenth of a phase when the output is a file.
import cliProgress from 'cli-progress';

export class BenchProgress {
  private readonly tty: boolean;
  private readonly bars: cliProgress.MultiBar;
  private bar: cliProgress.SingleBar | undefined;
  private phase: { title: string; total: number; done: number; began: number } | undefined;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = stream.isTTY === true;
    this.bars = new cliProgress.MultiBar(
      {
        stream,
        format: ' {title} [{bar}] {value}/{total} {detail} ({duration_formatted})',
        barsize: 24,
        // The run handles Ctrl-C itself (it must clean up), and a cursor hidden by a bar that
        // never stopped would stay hidden.
        gracefulExit: false,
        hideCursor: false,
        clearOnComplete: true,
        autopadding: true,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  /** A line of its own, kept above the bar. */
  note(line: string): void {
    if (this.tty && this.bar) this.bars.log(`${line}\n`);
    else this.stream.write(`${line}\n`);
  }

  begin(title: string, total: number): void {
    this.end();
    this.phase = { title, total, done: 0, began: Date.now() };
    if (this.tty) this.bar = this.bars.create(total, 0, { title, detail: '' });
    else this.stream.write(`${title}: 0/${total}\n`);
  }

  tick(detail = ''): void {
    const phase = this.phase;
    if (!phase) return;
    phase.done += 1;
    if (this.bar) {
      this.bar.increment(1, { detail });
    } else {
      const step = Math.max(1, Math.ceil(phase.total / 10));
      if (phase.done % step === 0 || phase.done === phase.total)
        this.stream.write(`${phase.title}: ${phase.done}/${phase.total} ${detail}\n`);
    }
  }

  /** Ends the current phase with a line saying how long it took. */
  end(summary = ''): void {
    this.close('✓', summary);
  }

  /** Ends the current phase, if one is running, as stopped by `reason`. */
  fail(reason: string): void {
    this.close('✗', reason);
  }

  private close(mark: string, summary: string): void {
    const phase = this.phase;
    if (!phase) return;
    if (this.bar) {
      this.bars.remove(this.bar);
      this.bar = undefined;
      this.bars.stop();
    }
    this.phase = undefined;
    this.stream.write(`${mark} ${phase.title} (${((Date.now() - phase.began) / 1000).toFixed(0)} s)${summary ? `: ${summary}` : ''}\n`);
  }
}
