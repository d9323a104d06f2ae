/*
 * kuasar-idle: the process of a gVisor (appkernel) sandbox's root container.
 *
 * runsc needs a root container to create a sandbox, and a pod's containers come later as its
 * subcontainers. Instead of pulling a pause image, kuasar gives the root container a rootfs
 * holding only this program, linked statically so that it needs nothing else there.
 *
 * It is PID 1 of the sandbox: it idles, reaps the children it inherits (an orphaned process of
 * a container that shares the sandbox's PID namespace), and exits 0 on SIGTERM or SIGINT, as
 * the pause container does.
 *
 * The three signals are blocked and taken with sigwait, so none is lost between a check and a
 * wait. Blocked, they are also queued although no handler is installed: a kernel discards a
 * signal whose action is the default one before it reaches a PID 1, but not a blocked one.
 */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>

int main(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return 1;

  for (;;) {
    int sig;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGCHLD) return 0;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
  }
}
