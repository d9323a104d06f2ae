// Parsing recvmsg(2) control messages: the SCM_RIGHTS layout of 64-bit Linux.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CMSG_HEADER_SIZE, passedDescriptors, rightsMessage, rightsSpace, SCM_RIGHTS, SOL_SOCKET } from '../../src/linux/cmsg.js';

/** One control message as the kernel lays it out, padded to 8 bytes. */
function controlMessage(level: number, type: number, ints: number[]): Buffer {
  const length = CMSG_HEADER_SIZE + ints.length * 4;
  const buffer = Buffer.alloc((length + 7) & ~7);
  buffer.writeBigUInt64LE(BigInt(length), 0);
  buffer.writeInt32LE(level, 8);
  buffer.writeInt32LE(type, 12);
  ints.forEach((fd, i) => {
    buffer.writeInt32LE(fd, CMSG_HEADER_SIZE + i * 4);
  });
  return buffer;
}

test('CMSG_SPACE for passed descriptors', () => {
  assert.equal(rightsSpace(1), 24);
  assert.equal(rightsSpace(2), 24);
  assert.equal(rightsSpace(3), 32);
});

test('reads the descriptors of SCM_RIGHTS messages, in order, across padding', () => {
  const control = Buffer.concat([controlMessage(SOL_SOCKET, SCM_RIGHTS, [7]), controlMessage(SOL_SOCKET, SCM_RIGHTS, [8, 9, 10])]);
  assert.deepEqual(passedDescriptors(control), [7, 8, 9, 10]);
});

test('skips control messages of other kinds', () => {
  const credentials = controlMessage(SOL_SOCKET, 2 /* SCM_CREDENTIALS */, [100, 0, 0]);
  const ipLevel = controlMessage(0 /* IPPROTO_IP */, SCM_RIGHTS, [5]);
  assert.deepEqual(passedDescriptors(Buffer.concat([credentials, ipLevel, controlMessage(SOL_SOCKET, SCM_RIGHTS, [3])])), [3]);
});

test('an empty control buffer passes nothing; the last message may go without its padding', () => {
  assert.deepEqual(passedDescriptors(Buffer.alloc(0)), []);
  assert.deepEqual(passedDescriptors(controlMessage(SOL_SOCKET, SCM_RIGHTS, [4]).subarray(0, 20)), [4]);
});

test('refuses a header that claims more than the buffer holds, or less than a header', () => {
  const message = controlMessage(SOL_SOCKET, SCM_RIGHTS, [4, 5]);
  assert.throws(() => passedDescriptors(message.subarray(0, 20)), /malformed control message/);
  const tooShort = Buffer.from(message);
  tooShort.writeBigUInt64LE(8n, 0);
  assert.throws(() => passedDescriptors(tooShort), /malformed control message/);
});

test("reads a buffer that does not start at its ArrayBuffer's beginning", () => {
  const backing = Buffer.concat([Buffer.alloc(8, 0xff), controlMessage(SOL_SOCKET, SCM_RIGHTS, [12])]);
  assert.deepEqual(passedDescriptors(backing.subarray(8)), [12]);
});

test('builds the SCM_RIGHTS message sendmsg takes, as the kernel lays it out', () => {
  assert.deepEqual(rightsMessage([5]), controlMessage(SOL_SOCKET, SCM_RIGHTS, [5]));
  assert.deepEqual(rightsMessage([5, 6, 7]), controlMessage(SOL_SOCKET, SCM_RIGHTS, [5, 6, 7]));
  assert.deepEqual(passedDescriptors(rightsMessage([3, 4])), [3, 4]);
});
