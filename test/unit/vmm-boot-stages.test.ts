// The guest's own part of a VM's boot (kinds/vmm/boot-stages.ts): the agent's uptime when it
// answered and /init's uptime when it had mounted the root image split the host's wait for the agent.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import pino from 'pino';
import { parseStageRecords, stageBreakdown } from '../../src/bench/stages.js';
import { INIT_SCRIPT } from '../../src/guest/image/init-script.js';
import { findKind } from '../../src/kinds/index.js';
import {
  AGENT_READY_STAGE,
  AGENT_START_STAGE,
  GUEST_BOOT_STAGE,
  guestBootStages,
  rootMountedUptime,
  timedAgentReady,
} from '../../src/kinds/vmm/boot-stages.js';

/** The console line /init prints before it starts the agent, as its script writes it, at `uptime`. */
function initLine(uptime: string): string {
  const echo = /echo "(kuasar-init: root image mounted at [^"]*starting the agent)"/.exec(INIT_SCRIPT)?.[1];
  assert.ok(echo, "the init script prints the root image's mount");
  return echo.replace(/\$\{uptime\}/, uptime);
}

test("the root image's mount is read from the console as the initramfs's /init prints it", () => {
  const console = ['[    0.612345] Linux version 6.1.0', initLine('2.57'), 'agent: listening'].join('\n');
  assert.equal(rootMountedUptime(console), 2.57);
  assert.equal(rootMountedUptime('kuasar-init: root image mounted at 3s, starting /bin/sh'), 3);
  assert.equal(rootMountedUptime('kuasar-init: no root disk /dev/vda, powering off'), undefined);
  assert.equal(rootMountedUptime(''), undefined);
});

test('the guest stages, innermost first: root mounted to the answer inside kernel start to the answer', () => {
  const stages = guestBootStages(7.25, 2.5);
  assert.deepEqual(
    stages.map((s) => s.stage),
    [AGENT_START_STAGE, GUEST_BOOT_STAGE],
  );
  assert.ok(Math.abs((stages[0]?.ms ?? 0) - 4_750) < 1e-9);
  assert.equal(stages[1]?.ms, 7_250);
  // Without the console's line (or a line that cannot be this boot's), the kernel-to-answer stage alone.
  assert.deepEqual(guestBootStages(7.25, undefined), [{ stage: GUEST_BOOT_STAGE, ms: 7_250 }]);
  assert.deepEqual(guestBootStages(1, 2), [{ stage: GUEST_BOOT_STAGE, ms: 1_000 }]);
});

test("logged inside vmm.agent-ready, the guest's stages nest under it in the benchmark's breakdown; the vmm kind's phases name them", async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const log = pino({ level: 'debug', timestamp: pino.stdTimeFunctions.isoTime }, sink).child({ sandbox: 's1' });
  const dir = mkdtempSync(join(tmpdir(), 'boot-stages-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const consoleLog = join(dir, 'console.log');
  writeFileSync(consoleLog, `${initLine('0.020')}\n`);
  // The guest's clock says 40 ms since its kernel started; the host waits a little longer.
  const opened = await timedAgentReady(log, consoleLog, async () => {
    await new Promise((resolve) => setTimeout(resolve, 60));
    return { check: { uptimeSeconds: 0.04 } };
  });
  assert.equal(opened.check.uptimeSeconds, 0.04);
  const records = parseStageRecords(lines.join(''));
  assert.deepEqual(
    records.map((r) => r.stage),
    [AGENT_START_STAGE, GUEST_BOOT_STAGE, AGENT_READY_STAGE],
  );
  const breakdown = stageBreakdown(
    [{ ms: 100, records: [...records, { stage: 'controller.start', ms: 90, at: (records[2]?.at ?? 0) + 1, sandbox: 's1', rpc: 'start' }] }],
    { everyRpc: true },
  );
  const row = (stage: string) => breakdown?.rows.find((r) => r.stage === stage);
  assert.equal(row(GUEST_BOOT_STAGE)?.inside, AGENT_READY_STAGE);
  assert.equal(row(AGENT_START_STAGE)?.inside, GUEST_BOOT_STAGE);

  // At info level nothing is logged and the console is not read.
  lines.length = 0;
  await timedAgentReady(log.child({}, { level: 'info' }), '/nonexistent/console.log', async () => ({ check: { uptimeSeconds: 1 } }));
  assert.deepEqual(lines, []);

  // The kind's start phases are made of the stages it logs.
  const phases = findKind('vmm')?.bench?.vmStart?.phases ?? [];
  const named = new Set(phases.flatMap((p) => [...p.stages, ...(p.minus ?? [])]));
  for (const stage of [AGENT_READY_STAGE, GUEST_BOOT_STAGE, AGENT_START_STAGE]) assert.ok(named.has(stage), stage);
});
