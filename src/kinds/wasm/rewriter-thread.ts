// The rewriter's thread (rewriter.ts): makes modules suspendable (rewrite.ts) with binaryen,
// which is loaded here only, so that it never stays in the daemon's own heap.
import { parentPort } from 'node:worker_threads';
import { makeSuspendable } from './rewrite.js';
import type { RewriteRequest, RewriteResult } from './rewriter.js';

const port = parentPort!;
port.on('message', ({ id, module }: RewriteRequest) => {
  let result: RewriteResult;
  try {
    result = { id, module: makeSuspendable(module) };
  } catch (err) {
    result = { id, error: (err as Error).message };
  }
  port.postMessage(result);
});
