// Reading container logs in the CRI log format, which containerd writes for every container:
// one record per line, `<RFC3339Nano time> <stdout|stderr> <tags> <content>`. The tag `P` marks a
// partial line (the rest follows in the next record of that stream), `F` a full one; the newline
// that ended the container's line is not part of content.

import { readFile } from 'node:fs/promises';
import { invalidArgument } from '../base/errors.js';

export type CriLogStream = 'stdout' | 'stderr';

export interface CriLogRecord {
  /** As written, RFC 3339 with nanoseconds: kept as text because Date holds milliseconds. */
  time: string;
  stream: CriLogStream;
  /** The container's line continues in the next record of this stream. */
  partial: boolean;
  content: string;
}

// The space before an empty content is optional.
const RECORD = /^(\S+) (stdout|stderr) (\S+)(?: (.*))?$/s;

/**
 * Parses CRI log text. A last line without its newline is being written and is left out;
 * any other line that is not a record is an error naming `source` and the line number.
 */
export function parseCriLog(text: string, source = 'log'): CriLogRecord[] {
  const lines = text.split('\n');
  lines.pop(); // "" after the final newline, or the unfinished last line
  return lines.map((line, index) => {
    const match = RECORD.exec(line);
    if (!match) throw invalidArgument(`${source}:${index + 1}: not a CRI log record`);
    const [, time, stream, tags, content = ''] = match as unknown as [string, string, CriLogStream, string, string?];
    return { time, stream, partial: tags.split(':').includes('P'), content };
  });
}

/** Reads and parses the CRI log file at `path` (ContainerStatus.logPath). */
export async function readContainerLog(path: string): Promise<CriLogRecord[]> {
  return parseCriLog(await readFile(path, 'utf8'), path);
}

/**
 * The text the container wrote, rebuilt from records: partial records are joined and every full
 * record ends its line with "\n". With `stream`, only that stream's records count.
 */
export function criLogText(records: readonly CriLogRecord[], stream?: CriLogStream): string {
  let text = '';
  for (const record of records) {
    if (stream !== undefined && record.stream !== stream) continue;
    text += record.partial ? record.content : `${record.content}\n`;
  }
  return text;
}
