// One state file the engine writes over and over (a sandbox's record, or one container's): its
// writes queued, so that the file always ends with the latest one, and its removal queued
// behind them.
//
// Written without fsync (state-file.ts: the rename alone makes a write whole or absent for any
// reader after a crash of kuasard). What a record promises is that the next kuasard, after a
// crash or a restart of kuasard alone, takes over what it describes; a crash of the machine
// leaves nothing to take over: the pods' processes, mounts and VMs end with it, and the default
// state directory (/run/kuasar) is a tmpfs, gone with the boot (on a disk, a record the crash
// left empty is refused as unusable: its pod is reported not ready and removed, as it had ended
// anyway). The sync cost each Task API call a flush for nothing. Written and removed with
// synchronous calls (writeJsonAtomicSync says why).
import { mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeJsonAtomicSync } from '../base/state-file.js';

export class RecordFile {
  private last: Promise<void> = Promise.resolve();
  /** The write queued behind `last` that has not begun: a write asked for now joins it. */
  private queued: Promise<void> | undefined;

  constructor(
    readonly path: string,
    /** Whether the first write makes the file's directory (its parent must exist: a removed sandbox's is never made again). */
    private readonly makesDir = false,
  ) {}

  /**
   * Writes `value()`, read when the write begins: a write asked for while another waits for its
   * turn joins that one, which carries its changes too. (A pod whose containers are created many
   * at a time would otherwise write, one after another, once per change.)
   */
  write(value: () => unknown): Promise<void> {
    if (this.queued) return this.queued;
    const write = this.last.then(() => {
      this.queued = undefined;
      const text = value();
      try {
        writeJsonAtomicSync(this.path, text);
      } catch (err) {
        if (!this.makesDir || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        try {
          mkdirSync(dirname(this.path), { mode: 0o700 });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
        writeJsonAtomicSync(this.path, text);
      }
    });
    this.queued = write;
    this.last = write.catch(() => undefined);
    return write;
  }

  /** Has the next write wait for `before` too (and not join one queued already). */
  delayNext(before: () => Promise<void>): void {
    this.queued = undefined;
    this.last = this.last.then(before);
  }

  /** Removes the file after the writes queued so far. */
  remove(): Promise<void> {
    this.queued = undefined;
    const removal = this.last.then(() => unlinkIfThere(this.path));
    this.last = removal.catch(() => undefined);
    return removal;
  }

  /** Resolves once every write and removal asked for so far is done (or has failed). */
  settled(): Promise<void> {
    return this.last;
  }
}

function unlinkIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
