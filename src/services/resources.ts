// containerd sends OCI runtime-spec objects (an exec's Process, an update's LinuxResources) as
// an Any whose value is JSON (its typeurl registers the runtime-spec types that way). Decoded
// here, at the edge, with an InvalidArgument that names the request when anything is off.
import type { Any } from '@bufbuild/protobuf/wkt';
import { invalidArgument } from '../base/errors.js';

export const LINUX_RESOURCES_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';
export const PROCESS_SPEC_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

/** The JSON object inside `any`, which must be of `type`; `what` names the request, `field` the part. */
export function decodeJsonAny(any: Any | undefined, type: string, what: string, field: string): Record<string, unknown> {
  if (!any) throw invalidArgument(`${what}: no ${field}`);
  if (any.typeUrl !== type) throw invalidArgument(`${what}: ${field} of type ${any.typeUrl}, expected ${type}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(any.value));
  } catch (err) {
    throw invalidArgument(`${what}: the ${field} is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw invalidArgument(`${what}: the ${field} is not a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** The LinuxResources object of an Update request, or InvalidArgument naming `what`. */
export function decodeLinuxResources(resources: Any | undefined, what: string): Record<string, unknown> {
  return decodeJsonAny(resources, LINUX_RESOURCES_TYPE, what, 'resources');
}
