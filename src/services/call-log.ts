// Every RPC that fails is logged once, at the service edge: refusals the caller expects
// (NotFound, InvalidArgument…) at debug, our own failures (Internal, Unknown) at error.
import type { Logger } from 'pino';
import { Code, toStatus } from '../core/errors.js';

type Handler = (...args: never[]) => Promise<unknown>;

export function withCallLog<H extends Record<string, Handler>>(handlers: H, log: Logger): H {
  const wrapped: Record<string, Handler> = {};
  for (const [method, handler] of Object.entries(handlers)) {
    wrapped[method] = async (...args: never[]) => {
      try {
        return await handler(...args);
      } catch (err) {
        const { code, message } = toStatus(err);
        if (code === Code.Internal || code === Code.Unknown) log.error({ method, code, err }, 'call failed');
        else log.debug({ method, code, message }, 'call refused');
        throw err;
      }
    };
  }
  return wrapped as H;
}
