// One process's stdio as the guest agent serves it (ReadStdio, WriteStdin, CloseStdin), shaped as
// the byte channel io/forwarded-stdio.ts forwards containerd's endpoints to. Each output read is
// one call that answers when the process wrote something; the next is made only when Node's
// stream asks for more, that is once what came before has been taken by the FIFO or stream on
// the host: back-pressure reaches the guest, where the agent stops reading the process's pipe
// (or terminal). A terminal's output comes as STDOUT, and its size is set with ResizePty.
//
// Reads name positions in the stream: each says where this host is (it received everything
// before) and what it has delivered (written where containerd reads it, not queued in this
// process); the agent keeps the rest. A kuasard that restarts reads from 0 and the agent answers
// from the oldest byte it kept: output answered to the dead kuasard and never written out comes
// again, so none is lost; output written out whose acknowledgement had not reached the agent yet
// (only while containerd's end was full) comes twice.
import { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { StdioStream } from '../../api/kuasar/agent/v1/agent_pb.js';
import type { StdioChannel } from '../../io/forwarded-stdio.js';
import type { AgentClient } from './channel.js';

/** The most one read asks for. */
const READ_CHUNK_BYTES = 64 * 1024;

export interface AgentProcessRef {
  containerId: string;
  /** Empty for a container's init. */
  execId: string;
}

/** Which of the process's stdio streams the agent holds (the others are /dev/null in the guest); none is stderr with a terminal. */
export interface AgentStdioStreams {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** Bytes of an output that the host has not written out yet (ForwardedStdio.unwritten). */
export type Unwritten = (slot: 'stdout' | 'stderr') => number;

export function agentStdioChannel(
  agent: AgentClient,
  ref: AgentProcessRef,
  streams: AgentStdioStreams,
  unwritten: Unwritten,
  log: Logger,
): StdioChannel {
  return {
    stdin: streams.stdin ? stdinWriter(agent, ref, log) : discard(),
    stdout: streams.stdout ? outputReader(agent, ref, StdioStream.STDOUT, () => unwritten('stdout'), log) : Readable.from([]),
    stderr: streams.stderr ? outputReader(agent, ref, StdioStream.STDERR, () => unwritten('stderr'), log) : Readable.from([]),
    resize: async ({ width, height }) => {
      await agent.resizePty({ ...ref, width, height });
    },
  };
}

function outputReader(agent: AgentClient, ref: AgentProcessRef, stream: StdioStream, unwritten: () => number, log: Logger): Readable {
  /** The position after the last byte received; 0 at first, and after a restart (the agent knows where it is). */
  let received = 0n;
  /** The next chunk: an answer with no data and no end (which the agent should not give) is asked again. */
  const nextChunk = async (): Promise<Buffer | null> => {
    for (;;) {
      // Received, less what still waits in this process: in the stream here, or queued for the sink.
      const waiting = BigInt(readable.readableLength + unwritten());
      const delivered = received > waiting ? received - waiting : 0n;
      const reply = await agent.readStdio({ ...ref, stream, maxBytes: READ_CHUNK_BYTES, offset: received, delivered });
      if (reply.data.length > 0) {
        received = reply.offset + BigInt(reply.data.length);
        // Data and the end together: the end comes with the next read, which answers at once.
        return Buffer.from(reply.data);
      }
      if (reply.eof) return null;
    }
  };
  const readable = new Readable({
    read() {
      nextChunk().then(
        (chunk) => this.push(chunk),
        (err: Error) => {
          // The VM or the process went away: the output ends with what arrived.
          log.debug({ err: err.message, stream: StdioStream[stream] }, 'stdio read from the guest ended');
          this.push(null);
        },
      );
    },
  });
  return readable;
}

function stdinWriter(agent: AgentClient, ref: AgentProcessRef, log: Logger): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      agent.writeStdin({ ...ref, data: chunk }).then(() => done(), done);
    },
    final(done) {
      agent.closeStdin(ref).then(
        () => done(),
        (err: Error) => {
          log.debug({ err: err.message }, 'closing stdin in the guest failed');
          done();
        },
      );
    },
    destroy(err, done) {
      // Dropped at once (a kill): the process's stdin ends too, best effort.
      agent.closeStdin(ref).catch(() => undefined);
      done(err);
    },
  });
}

/** A stdin nobody reads: the process has /dev/null. */
function discard(): Writable {
  return new Writable({ write: (_chunk, _encoding, done) => done() });
}
