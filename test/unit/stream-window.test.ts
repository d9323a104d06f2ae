// Flow-control bookkeeping of containerd's streaming API.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_DATA_MESSAGE, ReceiveWindow, SendWindow, STREAM_WINDOW } from '../../src/services/stream-window.js';

test('a sender sends nothing before it is granted credits, then at most what it was granted', () => {
  const window = new SendWindow();
  assert.equal(window.take(100), 0);
  assert.equal(window.grant(65536), true);
  assert.equal(window.take(100_000), MAX_DATA_MESSAGE, 'one message carries at most 32 KiB');
  assert.equal(window.take(100_000), MAX_DATA_MESSAGE);
  assert.equal(window.take(100_000), 0, 'the grant is used up');
  window.grant(10);
  assert.equal(window.take(3), 3);
  assert.equal(window.take(100), 7, 'what the grant has left');
});

test('a sender ignores grants that are not positive integers', () => {
  const window = new SendWindow();
  for (const bad of [0, -5, 1.5, Number.NaN]) assert.equal(window.grant(bad), false);
  assert.equal(window.take(100), 0, 'no credits');
});

test('a receiver grants a whole window at first, then again once half of it has arrived', () => {
  const window = new ReceiveWindow();
  assert.equal(window.due(), STREAM_WINDOW);
  assert.equal(window.due(), 0, 'granted already');
  assert.equal(window.received(STREAM_WINDOW / 4), true);
  assert.equal(window.due(), 0, 'three quarters still outstanding');
  assert.equal(window.received(STREAM_WINDOW / 4), true);
  assert.equal(window.due(), STREAM_WINDOW / 2, 'tops the window up');
  assert.equal(window.received(STREAM_WINDOW), true, 'a whole window is outstanding again');
  assert.equal(window.received(1), false, 'and no more');
});

test('a receiver notices a sender that overruns its window', () => {
  const window = new ReceiveWindow(100);
  window.due();
  assert.equal(window.received(60), true);
  assert.equal(window.received(60), false);
  assert.equal(window.due(), 100, 'nothing is outstanding after the overrun');
});
