// kuasard's admin socket (admin-api.ts): what `kuasar ps`, `inspect` and `exec` ask. Root's only:
// the socket is 0600 in a 0700 directory, so the kernel refuses anyone else's connect. Every
// answer is read from the engine's records in memory (no lock an RPC takes); an exec is the only
// call that does work, bounded in number and in time, and logged (an operator ran a command in
// a pod's guest). A bad request is answered with its code and why; the server goes on.
import { createServer, type IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import * as check from '../base/schema.js';
import { Code, invalidArgument, notFound, RuntimeError, toStatus, unimplemented, failedPrecondition } from '../base/errors.js';
import { validateId } from '../base/ids.js';
import type { ContainerRecord } from '../base/model.js';
import type { Sandbox } from '../engine/sandbox.js';
import type { Sandboxer } from '../engine/sandboxer.js';
import {
  EXEC_PREFIX,
  type ErrorBody,
  type ExecResponse,
  httpStatusOf,
  INSPECT_PREFIX,
  type Inspected,
  MAX_EXEC_TIMEOUT_MS,
  PS_PATH,
  type PsResponse,
} from './admin-api.js';
import { containerDetails, sandboxDetails, sandboxSummary } from './admin-views.js';
import { closeHttp, listenHttp } from './http-listen.js';

/** An exec's request body is a command line: anything bigger is refused unread. */
const MAX_BODY_BYTES = 64 * 1024;
/** Execs running at once, all sandboxes together: debugging, not a workload. */
const MAX_EXECS = 4;
/** Connections at once: an operator's commands, one or two at a time. */
const MAX_CONNECTIONS = 16;
/** How many ids an ambiguous one is shown with. */
const SHOWN_CANDIDATES = 5;

const ROUTES = `GET ${PS_PATH}, GET ${INSPECT_PREFIX}<id>, POST ${EXEC_PREFIX}<sandbox id>`;

const execRequest = check.strictObject({
  argv: check.array(check.string()).min(1, 'argv names no program'),
  timeoutMs: check.number().int().min(1).max(MAX_EXEC_TIMEOUT_MS),
});

export interface AdminServer {
  close(): Promise<void>;
}

interface Found {
  sandbox: Sandbox;
  container?: ContainerRecord;
}

export async function serveAdmin(path: string, sandboxers: readonly Sandboxer[], log: Logger): Promise<AdminServer> {
  let execs = 0;

  /** A sandbox or container by its id, or by the beginning of exactly one id (as `ps` shortens them). */
  function find(id: string): Found {
    const candidates = sandboxers
      .flatMap((s) => s.list())
      .flatMap((sandbox): (Found & { id: string })[] => [
        { sandbox, id: sandbox.id },
        ...sandbox.record.containers.map((container) => ({ sandbox, container, id: container.id })),
      ]);
    const exact = candidates.filter((c) => c.id === id);
    const matches = exact.length > 0 ? exact : candidates.filter((c) => c.id.startsWith(id));
    if (matches.length === 0) throw notFound(`sandbox or container ${id}`);
    if (matches.length > 1) {
      const shown = matches.slice(0, SHOWN_CANDIDATES).map((m) => m.id);
      throw invalidArgument(
        `"${id}" is ambiguous: ${matches.length} ids begin with it (${shown.join(', ')}${matches.length > shown.length ? ', …' : ''})`,
      );
    }
    return matches[0]!;
  }

  async function exec(id: string, body: unknown): Promise<ExecResponse> {
    const parsed = execRequest.safeParse(body);
    if (!parsed.success) {
      throw invalidArgument(`exec request: ${check.describeIssue(parsed.issues[0]!, '(body)')}`);
    }
    const { sandbox, container } = find(id);
    if (container) {
      throw invalidArgument(
        `${container.id} is a container of sandbox ${sandbox.id}: kuasar exec runs a command in a pod's own machine, outside its containers; give the sandbox's id (crictl exec runs one in a container)`,
      );
    }
    const { kind, phase } = sandbox.record;
    if (phase !== 'ready') throw failedPrecondition(`sandbox ${sandbox.id} is ${phase}, not ready`);
    const handle = sandbox.kindSandbox();
    if (!handle.debugExec) {
      throw unimplemented(
        `sandbox ${sandbox.id} is of the ${kind} kind, whose pods have no machine of their own to run a command in: their processes are on this host (crictl exec, nsenter)`,
      );
    }
    if (execs >= MAX_EXECS)
      throw new RuntimeError(Code.ResourceExhausted, `${MAX_EXECS} execs are running already; try again when one has ended`);
    execs++;
    sandbox.log.info({ argv: parsed.data.argv, timeoutMs: parsed.data.timeoutMs }, 'debug exec in the pod (kuasar exec)');
    try {
      const result = await handle.debugExec(parsed.data);
      return {
        ...result,
        stdout: Buffer.from(result.stdout).toString('base64'),
        stderr: Buffer.from(result.stderr).toString('base64'),
      };
    } finally {
      execs--;
    }
  }

  async function answer(req: IncomingMessage): Promise<PsResponse | Inspected | ExecResponse> {
    const path = new URL(req.url ?? '/', 'http://kuasard').pathname;
    if (req.method === 'GET' && path === PS_PATH) {
      return {
        kinds: sandboxers.map((s) => s.kind.name),
        sandboxes: sandboxers.flatMap((s) => s.list().map(sandboxSummary)),
        warmPools: sandboxers.flatMap((s) => {
          const status = s.kind.warmPool?.();
          return status ? [{ kind: s.kind.name, ...status }] : [];
        }),
      };
    }
    if (req.method === 'GET' && path.startsWith(INSPECT_PREFIX)) {
      const { sandbox, container } = find(idIn(path, INSPECT_PREFIX));
      return container ? containerDetails(sandbox, container) : sandboxDetails(sandbox);
    }
    if (req.method === 'POST' && path.startsWith(EXEC_PREFIX)) {
      const id = idIn(path, EXEC_PREFIX);
      return exec(id, await jsonBody(req));
    }
    throw notFound(`${req.method} ${path}: the admin socket serves ${ROUTES}`);
  }

  const server = createServer((req, res) => {
    answer(req).then(
      (body) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)),
      (err: unknown) => {
        const { code, message } = toStatus(err);
        if (code === Code.Internal) log.error({ err, url: req.url }, 'admin request failed');
        const body: ErrorBody = { error: { code: Code[code] ?? String(code), message } };
        // A body left unread (a refusal before it was read) ends the connection, not the daemon.
        res.writeHead(httpStatusOf(code), { 'content-type': 'application/json', ...(req.complete ? {} : { connection: 'close' }) });
        res.end(JSON.stringify(body));
      },
    );
  });
  server.maxConnections = MAX_CONNECTIONS;
  // An idle client holds nothing of ours for long.
  server.keepAliveTimeout = 5_000;
  const address = { kind: 'unix' as const, path };
  await listenHttp(server, address);
  log.info({ socket: path }, 'admin socket listening');
  return { close: () => closeHttp(server, address) };
}

function idIn(path: string, prefix: string): string {
  let id: string;
  try {
    id = decodeURIComponent(path.slice(prefix.length));
  } catch {
    throw invalidArgument(`${path}: the id is not valid percent-encoding`);
  }
  return validateId('sandbox or container', id);
}

/**
 * The request's body as JSON, at most MAX_BODY_BYTES: what is past that is read and dropped, and
 * the request refused once it has all come (an answer sent while the client still writes could
 * reach it as a broken pipe instead). Node's requestTimeout bounds a body that never ends.
 */
async function jsonBody(req: IncomingMessage): Promise<unknown> {
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.once('end', () => {
      if (size > MAX_BODY_BYTES)
        reject(new RuntimeError(Code.ResourceExhausted, `the request body has ${size} bytes, more than ${MAX_BODY_BYTES}`));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.once('error', reject);
  });
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`the request body is not JSON: ${(err as Error).message}`);
  }
}
