// Control messages (ancillary data) of recvmsg(2) and sendmsg(2), as laid out by the kernel on
// 64-bit Linux (x86_64, aarch64): each is a struct cmsghdr { size_t cmsg_len; int cmsg_level;
// int cmsg_type; } followed by its data, and the next one starts at the following 8-byte
// boundary (CMSG_ALIGN).
// Only SCM_RIGHTS (descriptors passed between processes) is understood here.

export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;
/** sizeof(struct cmsghdr), which is already aligned: CMSG_LEN(0). */
export const CMSG_HEADER_SIZE = 16;
const ALIGN = 8;
const FD_SIZE = 4;

const align = (length: number): number => (length + ALIGN - 1) & ~(ALIGN - 1);

/** CMSG_SPACE(n * sizeof(int)): the control buffer size that holds `count` passed descriptors. */
export function rightsSpace(count: number): number {
  return CMSG_HEADER_SIZE + align(count * FD_SIZE);
}

/**
 * Every descriptor that SCM_RIGHTS messages in `control` carry, in order. `control` must be the
 * control buffer cut to the msg_controllen that recvmsg returned. A header that claims more than
 * the buffer holds is an error: the descriptors it would name cannot be trusted (nor closed).
 */
export function passedDescriptors(control: Uint8Array): number[] {
  const view = new DataView(control.buffer, control.byteOffset, control.byteLength);
  const fds: number[] = [];
  let offset = 0;
  while (offset + CMSG_HEADER_SIZE <= control.byteLength) {
    const length = Number(view.getBigUint64(offset, true));
    if (length < CMSG_HEADER_SIZE || offset + length > control.byteLength) {
      throw new Error(`malformed control message at offset ${offset}: length ${length} in a buffer of ${control.byteLength}`);
    }
    const level = view.getInt32(offset + 8, true);
    const type = view.getInt32(offset + 12, true);
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      for (let at = offset + CMSG_HEADER_SIZE; at + FD_SIZE <= offset + length; at += FD_SIZE) fds.push(view.getInt32(at, true));
    }
    offset += align(length);
  }
  return fds;
}

/** A control buffer with one SCM_RIGHTS message passing `fds`, for sendmsg (libc/sockets.ts sendMessage). */
export function rightsMessage(fds: readonly number[]): Buffer {
  const control = Buffer.alloc(rightsSpace(fds.length));
  control.writeBigUInt64LE(BigInt(CMSG_HEADER_SIZE + fds.length * FD_SIZE), 0);
  control.writeInt32LE(SOL_SOCKET, 8);
  control.writeInt32LE(SCM_RIGHTS, 12);
  fds.forEach((fd, i) => {
    control.writeInt32LE(fd, CMSG_HEADER_SIZE + i * FD_SIZE);
  });
  return control;
}
