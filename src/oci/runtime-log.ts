// The error log an OCI runtime writes with `--log <file> --log-format json`. runc writes one JSON
// object per line. runsc writes its error entries back to back with no newline between them
// (runsc/cmd/util: the marshalled object alone), so the log is read as a sequence of top-level
// JSON objects. Neither writes an object across lines (JSON escapes newlines in strings), so a
// line break ends whatever object a partial write left open.

/** The text of each top-level one-line `{...}` in `text`, in order; text outside objects is skipped. */
export function jsonObjectsIn(text: string): string[] {
  const objects: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '\n') {
      depth = 0;
      inString = false;
    } else if (inString) {
      if (char === '\\') i++;
      else if (char === '"') inString = false;
    } else if (char === '"') {
      // A quote outside any object (stray text) opens no string we care about.
      if (depth > 0) inString = true;
    } else if (char === '{') {
      if (depth++ === 0) start = i;
    } else if (char === '}' && depth > 0) {
      if (--depth === 0) objects.push(text.slice(start, i + 1));
    }
  }
  return objects;
}

/** The messages of the error-level entries of a runtime's JSON log, oldest first. */
export function errorsFromLog(log: string): string[] {
  const messages: string[] = [];
  for (const object of jsonObjectsIn(log)) {
    let entry: { level?: unknown; msg?: unknown };
    try {
      entry = JSON.parse(object) as typeof entry;
    } catch {
      continue; // a fragment that is not JSON carries nothing we can trust
    }
    if ((entry.level === 'error' || entry.level === 'fatal') && typeof entry.msg === 'string' && entry.msg) messages.push(entry.msg);
  }
  return messages;
}
