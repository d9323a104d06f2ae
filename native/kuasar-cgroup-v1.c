/*
 * kuasar-cgroup-v1 <program> [args...]: runs the program in a mount namespace of its own in
 * which a hybrid cgroup layout's v2 hierarchy (/sys/fs/cgroup/unified) is not mounted.
 *
 * crun 1.8 (Debian 12's) refuses a hybrid layout whose v2 hierarchy has any controller
 * ("cgroups in hybrid mode not supported"), and a host whose v1 hierarchies leave one there
 * (hugetlb, say) has one. crun tells the layout by what is mounted at /sys/fs/cgroup/unified:
 * without it, crun sees the v1 layout it does support and manages the v1 hierarchies, which hold
 * every controller kuasar reads or limits. The runc kind runs every crun command through this.
 *
 * The new namespace is made a slave of the host's first, so that the unmount stays in it and
 * what the host mounts later (a pod's rootfs, a volume) still reaches it. It ends with the
 * program: a container crun creates gets a mount namespace of its own, cloned from this one.
 * One fork less than a shell and util-linux's unshare and umount: it is on every start's path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#define UNIFIED "/sys/fs/cgroup/unified"
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static int fail(const char *what) {
  fprintf(stderr, "kuasar-cgroup-v1: %s: %s\n", what, strerror(errno));
  return 125;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: kuasar-cgroup-v1 <program> [args...]\n");
    return 125;
  }
  struct statfs fs;
  // Only a hybrid layout has a v2 hierarchy there; elsewhere the program runs as it is.
  if (statfs(UNIFIED, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) {
    if (unshare(CLONE_NEWNS) != 0) return fail("unshare(CLONE_NEWNS)");
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) return fail("making / a slave");
    if (umount2(UNIFIED, MNT_DETACH) != 0) return fail("unmounting " UNIFIED);
  }
  execvp(argv[1], &argv[1]);
  return fail(argv[1]);
}
