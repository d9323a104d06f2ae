// The daemon's side of one WebAssembly instance: the worker thread it runs on (shared with other
// instances, worker-pool.ts), and how it ends (its own exit, a trap, or Kill). Kill sets the
// instance's kill cell, which the instance sees at its next call into the host or fuel check if
// it is running, and tells the thread, which drops it where it is suspended. A stdin that is a
// pipe is read here, a chunk each time the instance waits for one (instance-protocol.cts), and
// stdout and stderr pipes are made non-blocking, so that no read or write of a pipe ever blocks
// the thread the instance shares.
import { fstatSync } from 'node:fs';
import { Socket } from 'node:net';
import { failedPrecondition } from '../../base/errors.js';
import { duplicateFd, setNonBlocking } from '../../linux/libc/files.js';
import type { InstanceJob, WorkerMessage } from './instance-protocol.cjs';
import { CONTROL, CONTROL_CELLS, WASM_PAGE_BYTES } from './wasi-imports.cjs';
import type { HostedInstance, WasmThread, WorkerPool } from './worker-pool.js';

export interface InstanceEnd {
  exitStatus: number;
  /** The signal Kill ended it with, if that is how it ended. */
  signal?: number;
  /** It needed more memory than the container's limit. */
  outOfMemory: boolean;
  /**
   * Its thread ended under it: the descriptors node:wasi opened for it (which the thread closes
   * at an instance's end) are still open, and only the daemon can find and close them.
   */
  descriptorsLeft?: boolean;
}

/** What the daemon gives for one instance; the id, control block and stdin forwarding are the instance's own. */
export type InstanceOptions = Omit<InstanceJob, 'id' | 'control' | 'stdinForwarded'>;

/** Exit status of an instance whose worker failed outside the module (an error of the daemon's own). */
const WORKER_FAILURE_STATUS = 1;

let lastId = 0;

export class WasmInstance implements HostedInstance {
  /** Settles once the instance is over and its worker no longer uses its descriptors. */
  readonly ended: Promise<InstanceEnd>;
  private finish!: (end: InstanceEnd) => void;
  private loaded!: { resolve: () => void; reject: (err: Error) => void };
  private killedBy: number | undefined;
  private running = true;
  /** The instance's stdin pipe, read here (a descriptor of its own), when stdin is a pipe. */
  private readonly stdin: Socket | undefined;

  private constructor(
    private readonly thread: WasmThread,
    private readonly id: number,
    private readonly control: Int32Array,
    stdio: InstanceOptions['stdio'],
  ) {
    this.ended = new Promise((resolve) => (this.finish = resolve));
    if (isPipe(stdio[0])) this.stdin = forwardedStdin(stdio[0], (chunk) => this.thread.post({ type: 'stdin', id, chunk }));
    // A write to a full pipe then fails at once, and the instance waits for room suspended (wasi-imports.cts).
    for (const fd of [stdio[1], stdio[2]]) if (isPipe(fd)) setNonBlocking(fd, true);
  }

  /** Loads the module on a worker thread and waits until it is instantiated. */
  static async create(pool: WorkerPool, options: InstanceOptions): Promise<WasmInstance> {
    const control = new SharedArrayBuffer(CONTROL_CELLS * Int32Array.BYTES_PER_ELEMENT);
    const thread = await pool.acquire();
    const id = ++lastId;
    const instance = new WasmInstance(thread, id, new Int32Array(control), options.stdio);
    thread.host(id, instance);
    const job: InstanceJob = { ...options, id, control, stdinForwarded: instance.stdin !== undefined };
    await new Promise<void>((resolve, reject) => {
      instance.loaded = { resolve, reject };
      thread.post({ type: 'load', job });
    });
    return instance;
  }

  message(message: WorkerMessage): void {
    switch (message.type) {
      case 'ready':
        this.loaded.resolve();
        break;
      case 'failed':
        this.over({ exitStatus: WORKER_FAILURE_STATUS, outOfMemory: false });
        this.loaded.reject(failedPrecondition(`wasm module: ${message.message}`));
        break;
      case 'want-stdin':
        // At end-of-file the socket has ended: the instance hears it once more.
        if (this.stdin?.readableEnded) this.thread.post({ type: 'stdin', id: this.id, chunk: null });
        else this.stdin?.resume();
        break;
      case 'exited': {
        // A kill that raced with the instance's own end is reported as the kill.
        const signal = this.killedBy;
        if (signal !== undefined) this.over({ exitStatus: 128 + signal, signal, outOfMemory: false });
        else this.over({ exitStatus: message.status, outOfMemory: message.outOfMemory });
      }
    }
  }

  threadEnded(): void {
    const signal = this.killedBy;
    this.over(
      signal !== undefined
        ? { exitStatus: 128 + signal, signal, outOfMemory: false, descriptorsLeft: true }
        : { exitStatus: WORKER_FAILURE_STATUS, outOfMemory: false, descriptorsLeft: true },
    );
    this.loaded.reject(failedPrecondition('wasm worker ended before the module was ready'));
  }

  start(): void {
    this.thread.post({ type: 'run', id: this.id });
  }

  /** Ends the instance at once, whatever it is doing; any signal kills (WASI has no handlers). */
  kill(signal: number): void {
    if (!this.running || this.killedBy !== undefined) return;
    this.killedBy = signal;
    Atomics.store(this.control, CONTROL.kill, signal);
    this.thread.post({ type: 'kill', id: this.id });
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** The instance's linear memory in bytes, as of its last call into the host. */
  get memoryInUse(): number {
    return Atomics.load(this.control, CONTROL.memoryPages) * WASM_PAGE_BYTES;
  }

  private over(end: InstanceEnd): void {
    if (!this.running) return;
    this.running = false;
    this.stdin?.destroy();
    this.thread.leave(this.id);
    this.finish(end);
  }
}

/** A pipe or FIFO (the daemon's descriptor), not a file or /dev/null, which never block. */
function isPipe(fd: number): boolean {
  return fstatSync(fd).isFIFO();
}

/**
 * Reads the stdin pipe `fd` through a descriptor of its own (the daemon closes `fd` itself),
 * paused: resumed for one chunk each time the instance waits for input. `send` gets each chunk,
 * then null at end-of-file (or a read error, which the module sees as the end).
 */
function forwardedStdin(fd: number, send: (chunk: Uint8Array | null) => void): Socket {
  const socket = new Socket({ fd: duplicateFd(fd), readable: true, writable: false });
  socket.pause();
  socket.on('data', (chunk: Buffer) => {
    socket.pause();
    send(chunk);
  });
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    send(null);
  };
  socket.on('end', end);
  socket.on('error', end);
  return socket;
}
