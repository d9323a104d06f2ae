// The keys every kind's `[kinds.<name>]` table has. Each kind's registration extends this schema
// with keys of its own; config.ts composes the tables. A leaf module: registrations and config.ts
// both import it, and neither imports the other through it.
import * as check from '../base/schema.js';

export const absolutePath = check.string().refine((p) => p.startsWith('/'), 'must be an absolute path');

/**
 * Whether kuasard serves a kind: "auto" when its checks pass on this host (else it logs why not
 * and serves the others), true always (a failed check stops kuasard), false never.
 */
export const kindEnabled = check.union([check.literal('auto'), check.boolean()], '"auto", true or false');
export type KindEnabled = check.Infer<typeof kindEnabled>;

export const kindConfigSchema = check.strictObject({
  enabled: kindEnabled.default('auto'),
  /** The gRPC socket of this kind's sandbox controller (containerd's proxy plugin address). */
  listen: absolutePath.optional(),
  /** containerd's io_type for the CRI handler: "fifo" (default) or "streaming". */
  io_type: check.oneOf(['fifo', 'streaming']).default('fifo'),
});

export type KindConfig = check.Infer<typeof kindConfigSchema>;
