// kuasar's tables in containerd's configuration file: added by `kuasar install`, taken out by
// `kuasar uninstall`, and nothing else of the file touched. They go in one block of text at the
// end of the file, between two marker comments, rather than through a TOML library's
// parse-and-write: smol-toml (like every TOML library for Node) keeps no comments or layout, and
// the operator's file must stay theirs byte for byte. TOML lets a table be defined after its
// parent, so a block appended to any file whose tables are written as [headers] is valid; the
// merged text is parsed again to prove it, and to refuse the files where it is not.
import { parse as parseToml } from 'smol-toml';
import { CRI_RUNTIME_PLUGIN } from '../config/containerd.js';

export const BLOCK_BEGIN =
  '# >>> kuasar install: the sandboxers and CRI runtime handlers of kuasard (`kuasar uninstall` removes this block) >>>';
export const BLOCK_END = '# <<< kuasar install <<<';

/** containerd 2.x reads versions 2 and 3, but writes (and documents) only 3. */
const SUPPORTED_VERSION = 3;

/** What a configuration file holds apart from kuasar's block, and the block as it is written there. */
export interface SplitConfig {
  /** The file without kuasar's block: the operator's own text. */
  own: string;
  /** kuasar's block as found (markers included), or undefined when there is none. */
  block: string | undefined;
}

/** The file with kuasar's `tables` appended: the exact inverse of splitConfig's `own`. */
export function appendBlock(own: string, tables: string): string {
  // Exactly one newline before the block, whatever `own` ends with, so that taking the block out
  // gives back `own` to the byte (a file without a final newline included).
  return `${own}\n${renderBlock(tables)}`;
}

export function renderBlock(tables: string): string {
  return `${BLOCK_BEGIN}\n${tables.endsWith('\n') || tables === '' ? tables : `${tables}\n`}${BLOCK_END}\n`;
}

/** Finds kuasar's block in a configuration file. A damaged block (one marker without the other, two blocks) is refused. */
export function splitConfig(text: string, file: string): SplitConfig {
  const begin = markerLine(text, BLOCK_BEGIN);
  const end = markerLine(text, BLOCK_END);
  if (begin.count === 0 && end.count === 0) return { own: text, block: undefined };
  if (begin.count !== 1 || end.count !== 1 || end.start < begin.start) {
    throw new Error(
      `${file} holds a damaged kuasar block (its "${BLOCK_BEGIN.slice(0, 20)}…" and "${BLOCK_END}" markers must appear once each, in that order): ` +
        'edit the file by hand, or restore the backup `kuasar install` made',
    );
  }
  const blockEnd = end.start + BLOCK_END.length + (text[end.start + BLOCK_END.length] === '\n' ? 1 : 0);
  // appendBlock put one newline before the block: it is not the operator's.
  const before = text.slice(0, begin.start);
  const own = (before.endsWith('\n') ? before.slice(0, -1) : before) + text.slice(blockEnd);
  return { own, block: text.slice(begin.start, blockEnd) };
}

/** Where a marker stands as a whole line, and how many times. */
function markerLine(text: string, marker: string): { start: number; count: number } {
  let start = -1;
  let count = 0;
  for (let at = text.indexOf(marker); at !== -1; at = text.indexOf(marker, at + 1)) {
    const wholeLine = (at === 0 || text[at - 1] === '\n') && [undefined, '\n'].includes(text[at + marker.length]);
    if (!wholeLine) continue;
    if (count === 0) start = at;
    count++;
  }
  return { start, count };
}

export interface MergeInput {
  /** The file as it is now (with or without a block of an earlier install). */
  current: string;
  /** containerd's tables for kuasard (`containerdConfigSnippet`). */
  tables: string;
  /** The names the tables define: kuasar-<kind>, one per enabled kind. */
  names: readonly string[];
  /** The file's path, for messages. */
  file: string;
}

export interface Merge {
  /** The file with kuasar's block in it. */
  text: string;
  /** The operator's own text (what `kuasar uninstall` gives back). */
  own: string;
  /** False when the file had the same block already: nothing to write. */
  changed: boolean;
  /** True when the file had no block yet (this is a first install: time for a backup). */
  first: boolean;
}

/**
 * The configuration file with kuasar's block (re)placed at its end. Refuses a file that is not
 * TOML, that is not version 3, that defines one of kuasar's names itself, or to which the block
 * cannot be added as TOML (the parent tables written inline).
 */
export function mergeConfig({ current, tables, names, file }: MergeInput): Merge {
  const { own, block } = splitConfig(current, file);
  const doc = parseDocument(own, file);
  checkVersion(doc, file);
  const taken = names.filter((name) => definesName(doc, name));
  if (taken.length > 0) {
    throw new Error(
      `${file} defines ${taken.join(', ')} outside kuasar's block (by hand, or by appending \`kuasar config containerd\`): ` +
        'remove those tables, then run `kuasar install` again',
    );
  }
  const text = appendBlock(own, tables);
  let merged: unknown;
  try {
    merged = parseToml(text);
  } catch (err) {
    throw new Error(
      `kuasar's tables cannot be added to ${file}: ${firstLine(err)} (write its proxy_plugins and CRI runtimes as [table] headers, not inline tables)`,
    );
  }
  const missing = names.filter((name) => !definesName(merged, name));
  if (missing.length > 0)
    throw new Error(`kuasar's tables did not land in ${file} as expected: ${missing.join(', ')} not found after merging`);
  return { text, own, changed: text !== current, first: block === undefined };
}

/**
 * containerd's ttrpc socket as this configuration sets it: `ttrpc.address`, or containerd's
 * rule when that is empty (its gRPC socket's path with `.ttrpc` appended).
 */
export function ttrpcAddress(text: string, file: string): string | undefined {
  const doc = parseDocument(splitConfig(text, file).own, file) as { ttrpc?: { address?: unknown }; grpc?: { address?: unknown } };
  const ttrpc = doc.ttrpc?.address;
  if (typeof ttrpc === 'string' && ttrpc !== '') return ttrpc;
  const grpc = doc.grpc?.address;
  return typeof grpc === 'string' && grpc !== '' ? `${grpc}.ttrpc` : undefined;
}

function parseDocument(text: string, file: string): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${file} is not valid TOML: ${firstLine(err)}`);
  }
}

function checkVersion(doc: Record<string, unknown>, file: string): void {
  const version = doc['version'];
  if (version === SUPPORTED_VERSION) return;
  const migrate =
    `containerd 2.x converts it: \`containerd --config ${file} config migrate > ${file}.v3\`, ` +
    `check ${file}.v3, move it over ${file}, restart containerd, then run \`kuasar install\` again`;
  if (version === undefined) {
    throw new Error(
      `${file} declares no \`version\` (containerd then reads it by an older version's rules): kuasar registers itself in version ${SUPPORTED_VERSION}; ${migrate}`,
    );
  }
  throw new Error(
    `${file} is containerd configuration version ${typeof version === 'number' ? version : JSON.stringify(version)}; kuasar registers itself in version ${SUPPORTED_VERSION}: ${migrate}`,
  );
}

/** True when the document defines the proxy plugin or the CRI runtime handler `name`. */
function definesName(doc: unknown, name: string): boolean {
  const at = (value: unknown, ...keys: string[]): unknown =>
    keys.reduce<unknown>(
      (node, key) => (node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined),
      value,
    );
  return (
    at(doc, 'proxy_plugins', name) !== undefined || at(doc, 'plugins', CRI_RUNTIME_PLUGIN, 'containerd', 'runtimes', name) !== undefined
  );
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}
