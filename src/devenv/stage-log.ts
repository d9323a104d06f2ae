// A debug-level logger that keeps the `stage` records written to it (see base/stages.ts), for
// tests that check which stages a piece of code logs.
import { pino, type Logger } from 'pino';

export interface StageLog {
  log: Logger;
  /** The stage names logged so far, oldest first. */
  stages(): string[];
}

export function stageLog(): StageLog {
  const records: { msg?: unknown; stage?: unknown; ms?: unknown }[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line)) });
  return {
    log,
    stages: () => records.filter((record) => record.msg === 'stage' && typeof record.ms === 'number').map((record) => String(record.stage)),
  };
}
