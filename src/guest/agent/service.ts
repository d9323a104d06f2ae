// The Agent service (proto/kuasar/agent/v1/agent.proto) on a ttrpc server: each method checks its
// request and hands it to the module for its concern. Every failure is answered with a code
// (RuntimeError, or Internal for anything else); nothing is thrown out of the server.
import path from 'node:path';
import type { Logger } from 'pino';

import { Code, invalidArgument, RuntimeError } from '../../base/errors.js';
import { validateId } from '../../base/ids.js';
import type { WindowSize } from '../../base/model.js';
import { Agent, StdioStream } from '../../api/kuasar/agent/v1/agent_pb.js';
import { registerService, type ServiceImpl, type TtrpcServer } from '../../rpc/ttrpc/index.js';
import { guestFacts } from './check.js';
import { debugExec } from './debug-exec.js';
import { syncClock } from './clock.js';
import { setUpNetwork } from './network.js';
import type { Containers } from './containers.js';
import type { OutputStream } from './process-stdio.js';
import type { Sandbox } from './sandbox.js';

export const AGENT_SERVICE = Agent.typeName;

/**
 * Calls that wait for what later calls cause, or for as long as a command runs (DebugExec):
 * counted apart by the server, so none starves the rest.
 */
const LONG_METHODS = new Set(['WaitProcess', 'ReadStdio', 'DebugExec']);

export function isLongCall(service: string, method: string): boolean {
  return service === AGENT_SERVICE && LONG_METHODS.has(method);
}

/** ReadStdio's cap and default (see ReadStdioRequest.max_bytes). */
export const MAX_READ_BYTES = 1024 * 1024;
export const DEFAULT_READ_BYTES = 64 * 1024;

export interface AgentParts {
  containers: Containers;
  sandbox: Sandbox;
  /** The agent is the guest's init: it owns the clock. */
  isGuestInit: boolean;
  log: Logger;
}

const containerId = (id: string): string => validateId('container', id);
const execId = (id: string): string => (id === '' ? id : validateId('exec', id));

function outputStream(stream: StdioStream): OutputStream {
  if (stream === StdioStream.STDOUT) return 'stdout';
  if (stream === StdioStream.STDERR) return 'stderr';
  throw invalidArgument(`stdio stream ${stream}: ask for STDOUT or STDERR`);
}

/** A directory the host names in the guest: absolute and normalised (no "..", no empty parts). */
function guestDir(dir: string): string {
  if (!dir.startsWith('/') || path.posix.normalize(dir) !== dir || dir.includes('/../') || dir === '/') {
    throw invalidArgument(`empty_dirs: ${JSON.stringify(dir)} is not an absolute, normalised directory`);
  }
  return dir;
}

/** A request's JSON field that must hold one object (`what` says which, for the error). */
function jsonObject(json: Uint8Array, field: string, what = 'a JSON object'): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(json).toString('utf8'));
  } catch (err) {
    throw invalidArgument(`${field} is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidArgument(`${field} must be ${what}`);
  return value as Record<string, unknown>;
}

function specObject(json: Uint8Array): Record<string, unknown> {
  const spec = jsonObject(json, 'spec_json');
  const { process, root } = spec as { process?: unknown; root?: { path?: unknown } };
  if (typeof process !== 'object' || process === null) throw invalidArgument('spec_json has no process');
  if (typeof root?.path !== 'string' || root.path === '') throw invalidArgument('spec_json has no root.path');
  return spec;
}

function processObject(json: Uint8Array): Record<string, unknown> {
  const process = jsonObject(json, 'process_json');
  const { args, cwd } = process as { args?: unknown; cwd?: unknown };
  if (!Array.isArray(args) || args.length === 0 || !args.every((a) => typeof a === 'string')) {
    throw invalidArgument('process_json has no args');
  }
  if (typeof cwd !== 'string' || !cwd.startsWith('/')) throw invalidArgument('process_json has no absolute cwd');
  return process;
}

/** runc makes a terminal for a process whose spec asks for one: the request's stdio must say the same. */
function checkTerminal(process: unknown, terminal: boolean): void {
  const inSpec = (process as { terminal?: unknown }).terminal === true;
  if (inSpec !== terminal) throw invalidArgument(`stdio.terminal is ${terminal} but the process's terminal is ${inSpec}`);
}

/** The largest window side a terminal takes (struct winsize holds 16-bit sizes). */
const MAX_WINDOW_SIDE = 0xffff;

function windowSize(width: number, height: number): WindowSize {
  if (width > MAX_WINDOW_SIDE || height > MAX_WINDOW_SIDE) {
    throw invalidArgument(`window ${width}x${height}: a terminal is at most ${MAX_WINDOW_SIDE} wide and high`);
  }
  return { width, height };
}

function nanoseconds(iso: string): bigint {
  return BigInt(Date.parse(iso)) * 1_000_000n;
}

export function registerAgentService(server: TtrpcServer, parts: AgentParts): void {
  const { containers, sandbox } = parts;
  const impl: ServiceImpl<typeof Agent.method> = {
    async check() {
      return guestFacts();
    },
    async setupSandbox(request) {
      const namespaces = await sandbox.setUp(request);
      return { ipcNamespace: namespaces.ipc, utsNamespace: namespaces.uts, pidNamespace: namespaces.pid ?? '' };
    },
    async setupNetwork(request) {
      await setUpNetwork(request.interfaces, request.routes, parts.isGuestInit);
      return {};
    },
    async syncClock(request) {
      return { guestTimeBeforeNs: syncClock(request.hostTimeNs, parts.isGuestInit) };
    },
    async createContainer(request) {
      const id = containerId(request.containerId);
      const stdio = request.stdio ?? { stdin: false, stdout: false, stderr: false, terminal: false };
      const spec = specObject(request.specJson);
      checkTerminal(spec.process, stdio.terminal);
      const pid = await containers.create({ id, spec, stdio, emptyDirs: request.emptyDirs.map(guestDir) });
      return { pid };
    },
    async execProcess(request) {
      const id = containerId(request.containerId);
      const exec = validateId('exec', request.execId);
      const stdio = request.stdio ?? { stdin: false, stdout: false, stderr: false, terminal: false };
      const process = processObject(request.processJson);
      checkTerminal(process, stdio.terminal);
      return { pid: await containers.exec({ id, execId: exec, process, stdio }) };
    },
    async killProcess(request) {
      containers.killExec(containerId(request.containerId), validateId('exec', request.execId), request.signal);
      return {};
    },
    async deleteProcess(request) {
      await containers.deleteExec(containerId(request.containerId), validateId('exec', request.execId));
      return {};
    },
    async startContainer(request) {
      return { pid: await containers.start(containerId(request.containerId)) };
    },
    async killContainer(request) {
      await containers.kill(containerId(request.containerId), request.signal, request.all);
      return {};
    },
    async waitProcess(request, { signal }) {
      const exit = await containers.wait(containerId(request.containerId), execId(request.execId), signal);
      return { exitStatus: exit.exitStatus, exitedAtNs: nanoseconds(exit.exitedAt), oomKilled: exit.oomKilled };
    },
    async deleteContainer(request) {
      await containers.delete(containerId(request.containerId));
      return {};
    },
    async containerState(request) {
      const state = await containers.state(containerId(request.containerId));
      return { pid: Math.max(state.pid, 0), status: state.status };
    },
    async listPids(request) {
      return { pids: await containers.pids(containerId(request.containerId)) };
    },
    async readStdio(request, { signal }) {
      const stream = outputStream(request.stream);
      const buffer = containers.output(containerId(request.containerId), execId(request.execId), stream);
      const maxBytes = request.maxBytes === 0 ? DEFAULT_READ_BYTES : Math.min(request.maxBytes, MAX_READ_BYTES);
      const from = request.offset === undefined ? undefined : { offset: Number(request.offset), delivered: Number(request.delivered) };
      const chunk = await buffer.read(maxBytes, signal, from);
      return { ...chunk, offset: BigInt(chunk.offset) };
    },
    async writeStdin(request) {
      await containers.stdio(containerId(request.containerId), execId(request.execId)).writeStdin(request.data);
      return {};
    },
    async closeStdin(request) {
      containers.stdio(containerId(request.containerId), execId(request.execId)).closeStdin();
      return {};
    },
    // As runc's shim: a process without a terminal has nothing to resize, and that is no error.
    async resizePty(request) {
      const size = windowSize(request.width, request.height);
      containers.stdio(containerId(request.containerId), execId(request.execId)).resize(size);
      return {};
    },
    async containerStats(request) {
      return { metrics: await containers.stats(containerId(request.containerId)) };
    },
    async updateContainer(request) {
      const id = containerId(request.containerId);
      await containers.update(id, jsonObject(request.resourcesJson, 'resources_json', 'a JSON object (OCI LinuxResources)'));
      return {};
    },
    async pauseContainer(request) {
      await containers.pause(containerId(request.containerId));
      return {};
    },
    async resumeContainer(request) {
      await containers.resume(containerId(request.containerId));
      return {};
    },
    async debugExec(request, { signal }) {
      return debugExec(request.argv, request.timeoutMs, signal);
    },
  };
  registerService(server, Agent, withFailuresLogged(impl, parts.log));
}

/**
 * Logs each failed call (the console log is all there is to read in a VM): the caller's mistakes
 * at debug, the agent's own failures (Internal, or anything that is not a RuntimeError) as errors.
 */
function withFailuresLogged<T extends object>(impl: T, log: Logger): T {
  const wrapped: Record<string, unknown> = {};
  for (const [method, call] of Object.entries(impl) as [string, (...args: unknown[]) => Promise<unknown>][]) {
    wrapped[method] = async (...args: unknown[]) => {
      try {
        return await call(...args);
      } catch (err) {
        const own = !(err instanceof RuntimeError) || err.code === Code.Internal;
        const fields = { method, code: err instanceof RuntimeError ? Code[err.code] : 'Internal', error: (err as Error).message };
        if (own) log.error(fields, 'agent call failed');
        else log.debug(fields, 'agent call refused');
        throw err;
      }
    };
  }
  return wrapped as T;
}
