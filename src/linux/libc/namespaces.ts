// Namespaces through libc: unshare(2), setns(2) and the UTS namespace's hostname;
// linux/namespaces.ts and linux/pid-holder.ts build on them.

import { check, libcGroup } from './binding.js';

interface NamespaceCalls {
  unshare: (flags: number) => number;
  setns: (fd: number, nstype: number) => number;
  sethostname: (name: string, length: number) => number;
}

const libc = libcGroup<NamespaceCalls>((lib) => ({
  unshare: lib.func('int unshare(int flags)'),
  setns: lib.func('int setns(int fd, int nstype)'),
  sethostname: lib.func('int sethostname(const char *name, size_t len)'),
}));

/** clone(2) flag of a PID namespace, for unshare and setns. */
export const CLONE_NEWPID = 0x20000000;
/** clone(2) flags of the IPC and UTS namespaces (both per thread: unshare moves only the caller). */
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWUTS = 0x04000000;

/** unshare(2) for the calling thread (with CLONE_NEWPID: only its later children move). */
export function unshare(flags: number): void {
  check(`unshare(0x${flags.toString(16)})`, libc().unshare(flags));
}

/** setns(2): join (or, for PID namespaces, make children join) the namespace behind `fd`. */
export function setns(fd: number, nstype: number): void {
  check(`setns(${fd}, 0x${nstype.toString(16)})`, libc().setns(fd, nstype));
}

/** sethostname(2): the hostname of the calling thread's UTS namespace. */
export function sethostname(name: string): void {
  check(`sethostname(${name})`, libc().sethostname(name, Buffer.byteLength(name)));
}
