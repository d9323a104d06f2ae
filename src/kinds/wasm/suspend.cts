// Suspending and resuming one instance of a suspendable module (rewrite.ts), with the functions
// binaryen's asyncify exports. Asyncify keeps the unwound stack in the module's own linear memory,
// which belongs to the module: the first bytes of that memory are lent to asyncify only while it
// unwinds or rewinds (the module runs no code of its own then) and given back before the module
// goes on, and the unwound stack itself is kept here, outside the module, while it is suspended.
// That keeps a suspended instance's cost to the few bytes of its stack's locals.

/** What asyncify exports: its state switches, each taking (or checking) the data block at a pointer. */
interface AsyncifyExports {
  asyncify_start_unwind(at: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(at: number): void;
  asyncify_stop_rewind(): void;
}

/** The data block: a header (where the stack's data ends, where the block ends), then the data. */
const DATA_AT = 0;
const HEADER_BYTES = 8;
/** The most bytes an unwound stack may take (the bytes lent; a smaller memory lends all of itself). */
const LENT_BYTES = 64 * 1024;

export class Suspender {
  private readonly asyncify: AsyncifyExports;
  /** The unwound stack while the instance is suspended. */
  private stack: Uint8Array | undefined;
  /** The module's own bytes of the lent block, while asyncify uses it. */
  private lent: Uint8Array | undefined;
  private rewinding = false;

  /** Undefined for a module without asyncify's exports or a memory of its own. */
  static of(exports: Record<string, unknown>, memory: WebAssembly.Memory | undefined): Suspender | undefined {
    const names = ['asyncify_start_unwind', 'asyncify_stop_unwind', 'asyncify_start_rewind', 'asyncify_stop_rewind'];
    if (!memory || names.some((name) => typeof exports[name] !== 'function')) return undefined;
    return new Suspender(exports as unknown as AsyncifyExports, memory);
  }

  private constructor(
    asyncify: AsyncifyExports,
    private readonly memory: WebAssembly.Memory,
  ) {
    this.asyncify = asyncify;
  }

  /** In a host call: true if this is the call the instance was suspended in, now rewound to (its memory given back). */
  resumed(): boolean {
    if (!this.rewinding) return false;
    this.rewinding = false;
    this.asyncify.asyncify_stop_rewind();
    this.giveBack();
    return true;
  }

  /** In a host call: starts unwinding the stack; the host call returns, and so does the instance's entry. */
  unwind(): void {
    const bytes = this.bytes();
    const size = Math.min(LENT_BYTES, bytes.length);
    this.lent = bytes.slice(0, size);
    const header = new DataView(bytes.buffer);
    header.setUint32(DATA_AT, DATA_AT + HEADER_BYTES, true);
    header.setUint32(DATA_AT + 4, DATA_AT + size, true);
    this.asyncify.asyncify_start_unwind(DATA_AT);
  }

  /** After the entry returned: whether it returned because it unwound (the stack is then kept, the memory given back). */
  suspended(): boolean {
    if (!this.lent) return false;
    this.asyncify.asyncify_stop_unwind();
    const bytes = this.bytes();
    const end = new DataView(bytes.buffer).getUint32(DATA_AT, true);
    this.stack = bytes.slice(DATA_AT, end);
    // Only what asyncify wrote is given back: writing the rest would make pages of the lent
    // block resident that the module may never have touched.
    this.lent = this.lent.subarray(0, end - DATA_AT);
    this.giveBack();
    return true;
  }

  /** Before the entry is called again: lays the kept stack out for asyncify to rewind. */
  rewind(): void {
    const stack = this.stack;
    if (!stack) throw new Error('the instance is not suspended');
    const bytes = this.bytes();
    this.lent = bytes.slice(DATA_AT, DATA_AT + stack.length);
    bytes.set(stack, DATA_AT);
    this.stack = undefined;
    this.rewinding = true;
    this.asyncify.asyncify_start_rewind(DATA_AT);
  }

  get isSuspended(): boolean {
    return this.stack !== undefined;
  }

  private giveBack(): void {
    if (this.lent) this.bytes().set(this.lent, DATA_AT);
    this.lent = undefined;
  }

  private bytes(): Uint8Array {
    // A fresh view each time: memory.grow replaces the buffer.
    return new Uint8Array(this.memory.buffer);
  }
}
