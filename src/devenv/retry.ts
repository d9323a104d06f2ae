// Waiting out a peer that is reconnecting: after kuasard restarts, containerd's gRPC connection to
// the sandbox controller fails fast (Unavailable) until its reconnect backoff has passed.
import { Code, RuntimeError } from '../base/errors.js';

/** Calls `call` until it stops failing with Unavailable, for at most `timeoutMs` (default 10 s). */
export async function untilAnswered<T>(call: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof RuntimeError && err.code === Code.Unavailable) || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * Calls `check` until it stops throwing (an assertion on something that settles in its own time:
 * a log line, a guest's clock), every `intervalMs`, for at most `timeoutMs`; then the last failure.
 */
export async function eventually<T>(check: () => Promise<T>, timeoutMs: number, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}
