import assert from 'node:assert/strict';
import { test } from 'node:test';
import { linearFit, median, percentile, summarize } from '../../src/bench/stats.js';

const close = (actual: number, expected: number, epsilon = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= epsilon, `${actual} is not ${expected} (±${epsilon})`);

test('percentiles interpolate between the nearest ranks', () => {
  const sorted = [10, 20, 30, 40];
  assert.equal(percentile(sorted, 0), 10);
  assert.equal(percentile(sorted, 100), 40);
  assert.equal(percentile(sorted, 50), 25);
  close(percentile(sorted, 90), 37);
  assert.equal(percentile([7], 99), 7);
  assert.throws(() => percentile([], 50), RangeError);
  assert.throws(() => percentile(sorted, 101), RangeError);
});

test('a summary sorts its sample and gives min, percentiles, max and mean', () => {
  const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted on purpose
  const s = summarize(values);
  assert.equal(s.n, 100);
  assert.equal(s.min, 1);
  assert.equal(s.max, 100);
  close(s.p50, 50.5);
  close(s.p90, 90.1);
  close(s.p99, 99.01);
  close(s.mean, 50.5);
  assert.deepEqual(values.slice(0, 2), [100, 99], 'the input is left as it was');
  assert.equal(median([3, 1, 2]), 2);
  assert.throws(() => summarize([]), RangeError);
});

test('a linear fit recovers an exact line with r² 1', () => {
  const fit = linearFit([1, 5, 10, 20].map((x) => ({ x, y: 3000 + 170 * x })));
  close(fit.slope, 170);
  close(fit.intercept, 3000);
  close(fit.r2, 1);
});

test('a linear fit of noisy points is the least-squares line', () => {
  // Worked by hand: mean x 1.5, mean y 4, Sxx 5, Sxy 8, Syy 16.
  const fit = linearFit([
    { x: 0, y: 2 },
    { x: 1, y: 2 },
    { x: 2, y: 6 },
    { x: 3, y: 6 },
  ]);
  close(fit.slope, 1.6);
  close(fit.intercept, 1.6);
  close(fit.r2, 0.8);
  close(
    linearFit([
      { x: 1, y: 5 },
      { x: 2, y: 5 },
    ]).r2,
    1,
  );
  assert.throws(
    () =>
      linearFit([
        { x: 1, y: 1 },
        { x: 1, y: 2 },
      ]),
    RangeError,
  );
  assert.throws(() => linearFit([{ x: 1, y: 1 }]), RangeError);
});
