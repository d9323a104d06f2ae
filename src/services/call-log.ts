// Every RPC is logged once, at the service edge: its duration as a `stage` record (debug), and
// its failure: refusals the caller expects (NotFound, InvalidArgument…) at debug, our own
// failures (Internal, Unknown) at error. An observer (kuasard's metrics) is told each call's
// outcome and duration too.
import type { Logger } from 'pino';
import { Code, toStatus } from '../base/errors.js';
import { timed } from '../base/stages.js';

type Handler = (...args: never[]) => Promise<unknown>;

/** Told each call's method, its status code and its duration in seconds. */
export type CallObserver = (method: string, code: Code, seconds: number) => void;

/**
 * The logger calls are logged with: one for all, or one found from each call's arguments (a
 * task call's sandbox, from its context).
 */
export type CallLogger<H extends Record<string, Handler>> = Logger | ((...args: Parameters<H[keyof H]>) => Logger);

/** `service` prefixes the stage names: `controller.create`, `task.start`… */
export function withCallLog<H extends Record<string, Handler>>(
  handlers: H,
  log: CallLogger<H>,
  service: string,
  observe?: CallObserver,
): H {
  const wrapped: Record<string, Handler> = {};
  for (const [method, handler] of Object.entries(handlers)) {
    wrapped[method] = async (...args: never[]) => {
      const base = typeof log === 'function' ? log(...(args as Parameters<H[keyof H]>)) : log;
      // Controller requests name their sandbox: so do their stage records, for the benchmark.
      const sandboxId = (args[0] as { sandboxId?: unknown } | undefined)?.sandboxId;
      const sandbox = typeof sandboxId === 'string' && sandboxId ? { sandbox: sandboxId } : {};
      // A child logger costs on every call: made only when the stage record is written (debug).
      const callLog = base.isLevelEnabled('debug') ? base.child({ rpc: method, ...sandbox }) : base;
      const started = observe ? performance.now() : 0;
      try {
        const result = await timed(callLog, `${service}.${method}`, () => handler(...args));
        observe?.(method, Code.OK, (performance.now() - started) / 1000);
        return result;
      } catch (err) {
        const { code, message } = toStatus(err);
        observe?.(method, code, (performance.now() - started) / 1000);
        if (code === Code.Internal || code === Code.Unknown) base.error({ method, ...sandbox, code, err }, 'call failed');
        else base.debug({ method, ...sandbox, code, message }, 'call refused');
        throw err;
      }
    };
  }
  return wrapped as H;
}
