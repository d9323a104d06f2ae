// What differs between the OCI runtime CLIs we drive: the name they go by, how their error
// messages map to our codes, and the commands only some of them have. The commands and flags
// they share (create, start, kill, delete, exec, ps, state, events...) live in runtime.ts.

import { Code } from '../base/errors.js';
import { nativeProgram } from '../base/native-programs.js';

/** Which runtime error messages mean which code; the first match wins, no match is Internal. */
export type MessageCodes = readonly (readonly [RegExp, Code])[];

export interface RuntimeProfile {
  /** The runtime's name, also the binary looked up in PATH when none is given. */
  name: string;
  messageCodes: MessageCodes;
  /** Whether the CLI has `wait <id>` (runsc does; runc's container processes are our children instead). */
  hasWait: boolean;
  /** The `ociVersion` written into the bundles it runs, for a runtime that refuses newer ones than it knows (crun 1.8). */
  specVersion?: string;
  /** A command every invocation runs the runtime through (given the runtime and its arguments after its own). */
  launcher?: readonly string[];
}

const RUNC_MESSAGES: MessageCodes = [
  [/does not exist|container not running|no such process|process already finished/i, Code.NotFound],
  [/already exists|container with id exists/i, Code.AlreadyExists],
  [/cannot start|cannot exec|cannot pause|cannot resume|not paused/i, Code.FailedPrecondition],
  // The process asked for names no program in the container: the caller's mistake, not ours.
  [/executable file not found/i, Code.InvalidArgument],
];

/** runc. */
export const runcProfile: RuntimeProfile = { name: 'runc', hasWait: false, messageCodes: RUNC_MESSAGES };

/** Built by `npm run build:native` (native/kuasar-cgroup-v1.c). */
export const CGROUP_V1_LAUNCHER = nativeProgram('kuasar-cgroup-v1');

/**
 * crun, which takes runc's commands and flags. Debian 12's crun 1.8 refuses OCI spec versions
 * other than 1.0.x (containerd 2.x writes 1.2.x; the fields added since are optional, and crun
 * leaves those it does not know aside) and a hybrid cgroup layout whose v2 hierarchy holds a
 * controller: its bundles are written as 1.0.2, and it runs where that hierarchy is not
 * mounted (the launcher), managing the v1 ones. An unknown container it reports as a state
 * file it cannot open; a second start as an exec.fifo already gone; a missing program by its name.
 */
export const crunProfile: RuntimeProfile = {
  name: 'crun',
  hasWait: false,
  specVersion: '1.0.2',
  launcher: [CGROUP_V1_LAUNCHER],
  messageCodes: [
    [/exec\.fifo`?: no such file/i, Code.FailedPrecondition],
    [/error opening file `[^`]*\/status`: no such file|cannot open directory '[^']*': no such file/i, Code.NotFound],
    [/executable file `[^`]*` not found/i, Code.InvalidArgument],
    ...RUNC_MESSAGES,
  ],
};

/** The profile of a runc-like runtime, by its binary's name: crun's for crun, runc's otherwise. */
export function runcLikeProfile(binary: string): RuntimeProfile {
  return binary.split('/').pop() === 'crun' ? crunProfile : runcProfile;
}

/**
 * gVisor's runsc. Its messages, from runsc/cmd and runsc/container: an unknown id fails loading
 * with Go's os.ErrNotExist ("loading container: file does not exist"); a command in the wrong
 * state says "cannot <action> container "<id>" in state <state>".
 */
export const runscProfile: RuntimeProfile = {
  name: 'runsc',
  hasWait: true,
  messageCodes: [
    [/loading container.*(file does not exist|no such file or directory)|no container was found/i, Code.NotFound],
    // Like runc's "container not running": the process to signal is gone, which callers that
    // kill or delete treat as done. The sandbox down means every process in it is gone too.
    [/cannot signal[a-z ]* container "[^"]*" in state stopped|sandbox is not running/i, Code.NotFound],
    [/container already exists/i, Code.AlreadyExists],
    [/cannot [a-z ]+ container|not stopped without --force/i, Code.FailedPrecondition],
    [/invalid container id|unknown signal|invalid process spec|must be an absolute path|must not be empty/i, Code.InvalidArgument],
    // exec of a program the container lacks: the sentry's path lookup fails with ENOENT.
    [/executing processes for container: .*no such file or directory/i, Code.InvalidArgument],
  ],
};

export function codeForRuntimeMessage(message: string, profile: RuntimeProfile = runcProfile): Code {
  return profile.messageCodes.find(([pattern]) => pattern.test(message))?.[1] ?? Code.Internal;
}
