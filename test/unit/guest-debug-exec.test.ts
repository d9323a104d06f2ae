// The guest agent's DebugExec (`kuasar exec`), run on this host as the agent runs it in a guest:
// the output and the exit status, each stream bounded, the time-out killing the command's whole
// process group, a child left holding the output not holding the answer, and what is refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { eventually } from '../../src/devenv/retry.js';
import { DEBUG_EXEC_MAX_OUTPUT, debugExec, debugExecTimeout } from '../../src/guest/agent/debug-exec.js';

/** The process is gone: kill(0) fails with ESRCH (a zombie still answers until init reaps it). */
const gone = async (pid: number): Promise<void> => {
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `process ${pid} is still there`);
};

describe('guest agent DebugExec', () => {
  it('answers the output of each stream and the exit status, from / with root’s PATH', async () => {
    const result = await debugExec(['sh', '-c', 'pwd; echo "$PATH"; echo oops >&2; exit 3'], 5_000);
    assert.equal(result.stdout.toString(), '/\n/bin:/sbin:/usr/bin:/usr/sbin\n');
    assert.equal(result.stderr.toString(), 'oops\n');
    assert.deepEqual([result.exitStatus, result.timedOut, result.stdoutTruncated, result.stderrTruncated], [3, false, false, false]);
  });

  it('keeps at most 1 MiB of a stream, reading the rest so that the command ends', async () => {
    const result = await debugExec(['sh', '-c', `head -c ${3 * DEBUG_EXEC_MAX_OUTPUT} /dev/zero; echo done >&2`], 30_000);
    assert.equal(result.stdout.length, DEBUG_EXEC_MAX_OUTPUT);
    assert.equal(result.stdoutTruncated, true);
    assert.equal(result.stderr.toString(), 'done\n');
    assert.equal(result.exitStatus, 0);
  });

  it('kills the whole process group at the time-out: 128 + SIGKILL, timed out', async () => {
    const result = await debugExec(['sh', '-c', 'sleep 1000 & echo $!; sleep 1000'], 300);
    assert.deepEqual([result.exitStatus, result.timedOut], [137, true]);
    const background = Number(result.stdout.toString().trim());
    assert.ok(background > 1);
    // Killed with its group; an orphan, it is reaped by init a moment later.
    await eventually(() => gone(background), 10_000, 50);
  });

  it('answers once the command has exited, though a child it left in the background holds its output', async () => {
    const result = await debugExec(['sh', '-c', 'sleep 1000 & echo $!; echo left'], 60_000);
    assert.equal(result.timedOut, false);
    assert.equal(result.exitStatus, 0);
    const [child, line] = result.stdout.toString().trim().split('\n');
    assert.equal(line, 'left');
    process.kill(Number(child), 'SIGKILL');
  });

  it('refuses an empty argv, a NUL byte, and names a program that is not there', async () => {
    const codeOf = async (argv: string[]) => {
      try {
        await debugExec(argv, 1_000);
        return 'answered';
      } catch (err) {
        return err instanceof RuntimeError ? `${Code[err.code]}: ${err.message}` : String(err);
      }
    };
    assert.match(await codeOf([]), /^InvalidArgument: debug exec: argv names no program/);
    assert.match(await codeOf(['echo', 'a\0b']), /^InvalidArgument: .*NUL/);
    assert.match(await codeOf(['no-such-program-here']), /^NotFound: program "no-such-program-here" in the guest/);
  });

  it('takes 30 s for a time-out of 0 and caps one that is too long at 10 minutes', () => {
    assert.equal(debugExecTimeout(0), 30_000);
    assert.equal(debugExecTimeout(5), 5);
    assert.equal(debugExecTimeout(24 * 3600_000), 600_000);
  });
});
