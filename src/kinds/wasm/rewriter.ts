// Suspendable modules (rewrite.ts), made once per module and kept on disk by the digest of the
// module they were made from: a module seen before, even by an earlier kuasard, is not rewritten
// again. Rewriting runs on a thread of its own, started for the first module to rewrite and
// ended once none came for a while: binaryen is large, and most of the time no module is new.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { failedPrecondition } from '../../base/errors.js';

const THREAD_URL = new URL('./rewriter-thread.js', import.meta.url);
/** The rewriter's thread ends once it had nothing to do for this long (ms). */
const IDLE_MS = 10_000;
/** Part of the cache's path: a change to rewrite.ts that changes its output takes a new one. */
export const REWRITE_VERSION = 'suspendable-v2';

export interface RewriteRequest {
  id: number;
  module: Uint8Array;
}
export type RewriteResult = { id: number; module: Uint8Array } | { id: number; error: string };

export class Rewriter {
  private readonly dir: string;
  private thread: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (module: Uint8Array) => void; reject: (err: Error) => void }>();
  private lastId = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  /** @param cacheDir the kind's cache directory: modules are kept under it. */
  constructor(cacheDir: string) {
    this.dir = join(cacheDir, REWRITE_VERSION);
  }

  /** The suspendable form of `module`, whose digest is `digest`: from the cache, else made and kept. */
  async suspendable(digest: string, module: Uint8Array): Promise<Uint8Array> {
    const file = join(this.dir, `${digest}.wasm`);
    try {
      return await readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const rewritten = await this.rewrite(module);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // Whole or not at all: a kuasard that reads it while it is written, or after a crash, never sees half.
    const partial = `${file}.${process.pid}.${this.lastId}.partial`;
    await writeFile(partial, rewritten, { mode: 0o600 });
    await rename(partial, file);
    return rewritten;
  }

  private rewrite(module: Uint8Array): Promise<Uint8Array> {
    const thread = this.started();
    const id = ++this.lastId;
    clearTimeout(this.idleTimer);
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      thread.postMessage({ id, module } satisfies RewriteRequest);
    });
  }

  private started(): Worker {
    if (this.thread) return this.thread;
    const thread = new Worker(THREAD_URL, { stdout: false, stderr: false });
    thread.unref();
    thread.on('message', (result: RewriteResult) => {
      const waiting = this.pending.get(result.id);
      this.pending.delete(result.id);
      if ('error' in result) waiting?.reject(failedPrecondition(`wasm module: it could not be made suspendable: ${result.error}`));
      else waiting?.resolve(result.module);
      if (this.pending.size === 0) this.idleTimer = setTimeout(() => void thread.terminate(), IDLE_MS).unref();
    });
    // An error the thread did not catch (binaryen aborts on some input) ends it; 'exit' follows.
    thread.on('error', () => undefined);
    thread.once('exit', (code) => {
      this.thread = undefined;
      clearTimeout(this.idleTimer);
      for (const { reject } of this.pending.values()) reject(failedPrecondition(`wasm module: the rewriter's thread ended (code ${code})`));
      this.pending.clear();
    });
    this.thread = thread;
    return thread;
  }
}
