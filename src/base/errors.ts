// One error type for the whole runtime. Every failure that can reach containerd carries a code;
// the service edge (gRPC or ttrpc) maps the code to a wire status. Messages name the operation
// and the id, and never carry stack traces or host secrets.

/** Canonical status codes, numbered as gRPC and ttrpc number them. */
export enum Code {
  OK = 0,
  Cancelled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
}

export class RuntimeError extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RuntimeError';
    this.code = code;
  }
}

export const notFound = (what: string): RuntimeError => new RuntimeError(Code.NotFound, `${what}: not found`);
export const invalidArgument = (message: string): RuntimeError => new RuntimeError(Code.InvalidArgument, message);
export const alreadyExists = (what: string): RuntimeError => new RuntimeError(Code.AlreadyExists, `${what}: already exists`);
export const failedPrecondition = (message: string): RuntimeError => new RuntimeError(Code.FailedPrecondition, message);
export const unimplemented = (message: string): RuntimeError => new RuntimeError(Code.Unimplemented, message);
export const unavailable = (message: string): RuntimeError => new RuntimeError(Code.Unavailable, message);
export const internal = (message: string, cause?: unknown): RuntimeError => new RuntimeError(Code.Internal, message, { cause });

/**
 * The code and message to put on the wire for any thrown value. Errors that are not
 * RuntimeErrors are bugs or unexpected host failures: they become Internal with their message
 * (never their stack).
 */
export function toStatus(err: unknown): { code: Code; message: string } {
  if (err instanceof RuntimeError) return { code: err.code, message: err.message };
  const message = err instanceof Error ? err.message : String(err);
  return { code: Code.Internal, message };
}
