// The receiving end of an OCI runtime's --console-socket. For a process with a terminal, the
// runtime creates the pty inside the container and sends its master over this unix socket
// (SCM_RIGHTS); Node cannot receive descriptors, so the socket is driven through libc.
//
// No waiting is needed: the runtime connects and sends the master before `create` or
// `exec --detach` returns, so once it has returned successfully both the connection and the
// message are already queued on the socket.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { internal } from '../base/errors.js';
import { passedDescriptors, rightsSpace } from '../linux/cmsg.js';
import { closeFd } from '../linux/libc/files.js';
import { acceptNow, listenUnix, receiveMessageNow } from '../linux/libc/sockets.js';

/** runc sends the pty's name (/dev/pts/N) as the message's data. */
const NAME_BYTES = 4096;

export class ConsoleSocket {
  private listenFd: number | undefined;

  private constructor(
    readonly path: string,
    listenFd: number,
  ) {
    this.listenFd = listenFd;
  }

  /** Listens on a new socket in `dir`, which must be short enough for a socket path and private. */
  static open(dir: string): ConsoleSocket {
    const path = join(dir, `${randomBytes(8).toString('hex')}.sock`);
    return new ConsoleSocket(path, listenUnix(path));
  }

  /** The pty master the runtime sent (close-on-exec, owned by the caller from now on). */
  receiveMaster(): number {
    if (this.listenFd === undefined) throw internal(`console socket ${this.path} is closed`);
    const connection = acceptNow(this.listenFd);
    if (connection === undefined) throw internal('the OCI runtime did not connect to the console socket');
    try {
      const message = receiveMessageNow(connection, NAME_BYTES, rightsSpace(1));
      const fds = message ? passedDescriptors(message.control) : [];
      if (fds.length !== 1) {
        for (const fd of fds) closeFd(fd);
        throw internal(`the OCI runtime sent ${fds.length} descriptors on the console socket, expected the pty master`);
      }
      return fds[0]!;
    } finally {
      closeFd(connection);
    }
  }

  close(): void {
    if (this.listenFd === undefined) return;
    closeFd(this.listenFd);
    this.listenFd = undefined;
    rmSync(this.path, { force: true });
  }
}
