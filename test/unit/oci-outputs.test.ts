import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Code } from '../../src/base/errors.js';
import { parsePids, parseState, parseWaitResult } from '../../src/oci/outputs.js';
import { codeForRuntimeMessage, runcProfile, runscProfile } from '../../src/oci/profiles.js';
import { errorsFromLog, jsonObjectsIn } from '../../src/oci/runtime-log.js';
import { parseStatsEvent, quoteIntegers } from '../../src/oci/stats.js';

describe('runtime logs', () => {
  it('reads runsc’s error entries, written back to back without newlines', () => {
    const log =
      '{"msg":"loading container: file does not exist","level":"error","time":"2026-12-06T08:00:00Z"}' +
      '{"msg":"a brace } and a quote \\" inside","level":"error","time":"t"}\n';
    assert.deepEqual(errorsFromLog(log), ['loading container: file does not exist', 'a brace } and a quote " inside']);
  });

  it('drops an object a partial write left open and reads on at the next line', () => {
    assert.deepEqual(jsonObjectsIn('{"msg":"cut off\n{"a":1}  noise {"b":{"c":2}}\n'), ['{"a":1}', '{"b":{"c":2}}']);
  });
});

describe('error codes per runtime', () => {
  const runsc = (message: string): Code => codeForRuntimeMessage(message, runscProfile);

  it('maps runsc’s messages', () => {
    assert.equal(runsc('FetchSpec failed: loading container: file does not exist'), Code.NotFound);
    assert.equal(runsc('cannot signal a process inside container "c1" in state stopped'), Code.NotFound);
    assert.equal(runsc('sandbox is not running'), Code.NotFound);
    assert.equal(runsc('creating container: container already exists'), Code.AlreadyExists);
    assert.equal(runsc('starting container: cannot start container "c1" in state stopped'), Code.FailedPrecondition);
    assert.equal(runsc('pause failed: cannot pause container "c1" in state paused'), Code.FailedPrecondition);
    assert.equal(runsc('cannot delete container that is not stopped without --force flag'), Code.FailedPrecondition);
    assert.equal(runsc('invalid container id: ../x'), Code.InvalidArgument);
    assert.equal(runsc('executing processes for container: no such file or directory'), Code.InvalidArgument);
    assert.equal(runsc('cannot create sandbox: fork/exec: permission denied'), Code.Internal);
    assert.equal(runsc('writing pid file: disk full'), Code.Internal);
  });

  it('keeps each runtime’s table to itself', () => {
    // runsc's "file does not exist" is no runc message; runc's "container with id exists" none of runsc's.
    assert.equal(codeForRuntimeMessage('container with id exists: c1', runscProfile), Code.Internal);
    assert.equal(codeForRuntimeMessage('container with id exists: c1', runcProfile), Code.AlreadyExists);
    assert.equal(codeForRuntimeMessage('invalid container id: ../x', runcProfile), Code.Internal);
  });
});

describe('command outputs', () => {
  it('parses runsc’s indented state, with annotations', () => {
    const output = JSON.stringify(
      {
        ociVersion: '1.1.0',
        id: 'c1',
        status: 'created',
        pid: 777,
        bundle: '/b/c1',
        annotations: { 'io.kubernetes.cri.container-type': 'sandbox' },
      },
      null,
      2,
    );
    assert.deepEqual(parseState(output), {
      id: 'c1',
      status: 'created',
      pid: 777,
      bundle: '/b/c1',
      annotations: { 'io.kubernetes.cri.container-type': 'sandbox' },
    });
  });

  it('rejects a state of the wrong shape', () => {
    for (const output of [
      '',
      '[]',
      '{"id":"c1","status":"running","pid":"1","bundle":"/b"}',
      '{"id":"c1","status":"asleep","pid":1,"bundle":"/b"}',
    ]) {
      assert.throws(() => parseState(output), { code: Code.Internal, message: /unrecognised runtime state output/ }, output);
    }
  });

  it('parses ps, null meaning none', () => {
    assert.deepEqual(parsePids('[1,7]\n'), [1, 7]);
    assert.deepEqual(parsePids('null'), []);
    assert.throws(() => parsePids('[1,"x"]'), { code: Code.Internal });
  });

  it('parses runsc’s wait result for the container asked about', () => {
    const exit = parseWaitResult('{"id":"c1","exitStatus":137}\n', 'c1');
    assert.equal(exit.exitStatus, 137);
    assert.ok(!Number.isNaN(Date.parse(exit.exitedAt)));
    assert.throws(() => parseWaitResult('{"id":"c2","exitStatus":0}', 'c1'), { code: Code.Internal });
    assert.throws(() => parseWaitResult('{"id":"c1"}', 'c1'), { code: Code.Internal });
  });
});

describe('stats', () => {
  it('quotes integers outside strings only, and leaves fractions alone', () => {
    assert.equal(
      quoteIntegers('{"a":18446744073709551615,"b":"7 \\" 8","c":[-1,2.5,1e3],"d":0}'),
      '{"a":"18446744073709551615","b":"7 \\" 8","c":["-1",2.5,1e3],"d":"0"}',
    );
  });

  it('parses runsc’s stats event, network interfaces by their Go names', () => {
    const output = JSON.stringify({
      type: 'stats',
      id: 'c1',
      data: {
        cpu: { usage: { kernel: 5, user: 7, total: 12, percpu: [12] } },
        memory: {
          usage: { limit: 0, usage: 8388608, failcnt: 0 },
          swap: { limit: 0, failcnt: 0 },
          kernel: { limit: 0, failcnt: 0 },
          kernelTCP: { limit: 0, failcnt: 0 },
        },
        pids: { current: 3 },
        network_interfaces: [
          { Name: 'eth0', RxBytes: 1500, RxPackets: 1, RxErrors: 0, RxDropped: 0, TxBytes: 90, TxPackets: 2, TxErrors: 0, TxDropped: 1 },
        ],
      },
    });
    const stats = parseStatsEvent(output, 'c1');
    assert.deepEqual(stats.cpu, {
      usage: { total: 12n, kernel: 5n, user: 7n, perCpu: [12n] },
      throttling: { periods: 0n, throttledPeriods: 0n, throttledTime: 0n },
    });
    assert.equal(stats.memory.usage.usage, 8388608n);
    assert.deepEqual(stats.memory.raw, {});
    assert.deepEqual(stats.pids, { current: 3n, limit: 0n });
    assert.deepEqual(stats.networkInterfaces, [
      {
        name: 'eth0',
        rxBytes: 1500n,
        rxPackets: 1n,
        rxErrors: 0n,
        rxDropped: 0n,
        txBytes: 90n,
        txPackets: 2n,
        txErrors: 0n,
        txDropped: 1n,
      },
    ]);
  });

  it('rejects output that is not the stats event of the container', () => {
    assert.throws(() => parseStatsEvent('{"type":"oom","id":"c1"}', 'c1'), {
      code: Code.Internal,
      message: /unrecognised runtime events output/,
    });
    assert.throws(() => parseStatsEvent('{"type":"stats","id":"c2","data":{}}', 'c1'), { code: Code.Internal });
    assert.throws(() => parseStatsEvent('not json', 'c1'), { code: Code.Internal });
    assert.throws(() => parseStatsEvent('{"type":"stats","id":"c1","data":{"pids":{"current":true}}}', 'c1'), {
      code: Code.Internal,
      message: /pids.current is not an integer/,
    });
  });
});
