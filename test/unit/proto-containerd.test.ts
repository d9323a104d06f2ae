// Checks proto/ against the containerd installed on this host. Go programs embed every .proto
// they were built with as a serialized FileDescriptorProto (gogo-generated ones, like the CRI
// API, gzip it), so the binary itself says which field numbers containerd speaks. Skipped when
// no containerd binary is on PATH.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants as zlib, inflateRawSync } from 'node:zlib';
import { fromBinary, type DescFile } from '@bufbuild/protobuf';
import {
  FileDescriptorProtoSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FileDescriptorProto,
  type ServiceDescriptorProto,
} from '@bufbuild/protobuf/wkt';
import { file_containerd_cgroups_v1_metrics } from '../../src/api/containerd/cgroups/v1/metrics_pb.js';
import { file_containerd_cgroups_v2_metrics } from '../../src/api/containerd/cgroups/v2/metrics_pb.js';
import { file_containerd_events_task } from '../../src/api/containerd/events/task_pb.js';
import { file_containerd_runc_options } from '../../src/api/containerd/runc/options_pb.js';
import { file_containerd_runtime_task_v2_shim } from '../../src/api/containerd/runtime/task/v2/shim_pb.js';
import { file_containerd_runtime_task_v3_shim } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { file_containerd_services_events_ttrpc_v1_events } from '../../src/api/containerd/services/events/ttrpc/v1/events_pb.js';
import { file_containerd_services_sandbox_v1_sandbox } from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import { file_containerd_services_streaming_v1_streaming } from '../../src/api/containerd/services/streaming/v1/streaming_pb.js';
import { file_containerd_types_event } from '../../src/api/containerd/types/event_pb.js';
import { file_containerd_types_metrics } from '../../src/api/containerd/types/metrics_pb.js';
import { file_containerd_types_mount } from '../../src/api/containerd/types/mount_pb.js';
import { file_containerd_types_platform } from '../../src/api/containerd/types/platform_pb.js';
import { file_containerd_types_sandbox } from '../../src/api/containerd/types/sandbox_pb.js';
import { file_containerd_types_task_task } from '../../src/api/containerd/types/task/task_pb.js';
import { file_containerd_types_transfer_streaming } from '../../src/api/containerd/types/transfer/streaming_pb.js';
import { file_cri_runtime_v1_api } from '../../src/api/cri/runtime/v1/api_pb.js';

const OUR_FILES: DescFile[] = [
  file_containerd_cgroups_v1_metrics,
  file_containerd_cgroups_v2_metrics,
  file_containerd_events_task,
  file_containerd_runc_options,
  file_containerd_runtime_task_v2_shim,
  file_containerd_runtime_task_v3_shim,
  file_containerd_services_events_ttrpc_v1_events,
  file_containerd_services_sandbox_v1_sandbox,
  file_containerd_services_streaming_v1_streaming,
  file_containerd_types_event,
  file_containerd_types_metrics,
  file_containerd_types_mount,
  file_containerd_types_platform,
  file_containerd_types_sandbox,
  file_containerd_types_task_task,
  file_containerd_types_transfer_streaming,
  file_cri_runtime_v1_api,
];

// Our Task v2 service reuses the v3 messages (message names never reach the ttrpc wire).
// Renaming upstream's v2 messages into v3 makes the comparison check that this is sound.
const normalise = (typeName: string): string => typeName.replace(/^\.containerd\.task\.v2\./, '.containerd.task.v3.');

function findOnPath(binary: string): string | undefined {
  return (process.env.PATH ?? '')
    .split(':')
    .map((dir) => join(dir, binary))
    .find((path) => existsSync(path));
}

function readVarint(bytes: Uint8Array, pos: number): [value: number, next: number] | undefined {
  let value = 0;
  for (let shift = 0; shift < 35 && pos < bytes.length; shift += 7) {
    const byte = bytes[pos++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, pos];
  }
  return undefined;
}

/**
 * Where a FileDescriptorProto starting at `start` may end, longest first. Descriptors sit next
 * to unrelated bytes (often the next descriptor), so walk top-level fields while they look like
 * FileDescriptorProto fields, and stop at a second name or package: that is the next file.
 */
function candidateEnds(bytes: Uint8Array, start: number): number[] {
  const ends: number[] = [];
  const singular = new Set<number>();
  let pos = start;
  for (;;) {
    const tag = readVarint(bytes, pos);
    if (!tag) break;
    const field = Math.floor(tag[0] / 8);
    const wireType = tag[0] & 7;
    if (!((field >= 1 && field <= 12) || field === 14)) break;
    if ([1, 2, 8, 9, 12, 14].includes(field)) {
      if (singular.has(field)) break;
      singular.add(field);
    }
    const value = readVarint(bytes, tag[1]);
    if (!value) break;
    if (wireType === 0) pos = value[1];
    else if (wireType === 2 && value[1] + value[0] <= bytes.length) pos = value[1] + value[0];
    else break;
    ends.push(pos);
  }
  return ends.reverse();
}

function parseDescriptor(bytes: Uint8Array): FileDescriptorProto | undefined {
  try {
    const file = fromBinary(FileDescriptorProtoSchema, bytes);
    return file.name.endsWith('.proto') ? file : undefined;
  } catch {
    return undefined;
  }
}

function embeddedDescriptors(binary: Buffer): FileDescriptorProto[] {
  const files: FileDescriptorProto[] = [];
  // Plain descriptors: field 1 (0x0a), the file name's length, a name ending in ".proto".
  for (let pos = binary.indexOf(0x0a); pos >= 0; pos = binary.indexOf(0x0a, pos + 1)) {
    const length = readVarint(binary, pos + 1);
    if (!length || length[0] < 7 || length[0] > 255) continue;
    const name = binary.toString('latin1', length[1], length[1] + length[0]);
    if (!/^[\w./-]+\.proto$/.test(name)) continue;
    for (const end of candidateEnds(binary, pos)) {
      const file = parseDescriptor(binary.subarray(pos, end));
      if (file) {
        files.push(file);
        break;
      }
    }
  }
  // Gzipped descriptors: a gzip member with Go's fixed 10-byte header.
  const magic = Buffer.from([0x1f, 0x8b, 0x08]);
  for (let pos = binary.indexOf(magic); pos >= 0; pos = binary.indexOf(magic, pos + 1)) {
    let inflated: Buffer;
    try {
      inflated = inflateRawSync(binary.subarray(pos + 10, pos + 10 + (1 << 20)), { finishFlush: zlib.Z_SYNC_FLUSH });
    } catch {
      continue;
    }
    const file = parseDescriptor(inflated);
    if (file) files.push(file);
  }
  return files;
}

interface Index {
  messages: Map<string, DescriptorProto>;
  enums: Map<string, EnumDescriptorProto>;
  services: Map<string, ServiceDescriptorProto>;
}

function index(files: FileDescriptorProto[]): Index {
  const result: Index = { messages: new Map(), enums: new Map(), services: new Map() };
  const addMessage = (scope: string, message: DescriptorProto) => {
    const name = `${scope}.${message.name}`;
    result.messages.set(name, message);
    for (const nested of message.nestedType) addMessage(name, nested);
    for (const e of message.enumType) result.enums.set(`${name}.${e.name}`, e);
  };
  for (const file of files) {
    const scope = file.package ? `.${file.package}` : '';
    for (const message of file.messageType) addMessage(scope, message);
    for (const e of file.enumType) result.enums.set(`${scope}.${e.name}`, e);
    for (const service of file.service) result.services.set(`${scope}.${service.name}`, service);
  }
  return result;
}

/**
 * Compares two lists keyed by number (fields, enum values) or name (methods). What we define must
 * equal upstream's entry with the same key: that is a wire fact. Entries only upstream has are
 * reported, not failed: a newer containerd from Debian may add fields we do not use yet.
 */
function compare(
  what: string,
  ours: Map<string | number, string>,
  theirs: Map<string | number, string>,
  conflicts: string[],
  additions: string[],
): void {
  for (const [key, signature] of ours) {
    const upstream = theirs.get(key);
    if (upstream === undefined) conflicts.push(`${what}: ${signature} is not in containerd`);
    else if (upstream !== signature) conflicts.push(`${what}: ours ${signature}, containerd ${upstream}`);
  }
  for (const [key, signature] of theirs) {
    if (!ours.has(key)) additions.push(`${what}: containerd also has ${signature}`);
  }
}

const fields = (message: DescriptorProto, rename: (typeName: string) => string) =>
  new Map(message.field.map((f) => [f.number, `${f.name}=${f.number} label=${f.label} type=${f.type} ${rename(f.typeName)}`]));

const enumValues = (e: EnumDescriptorProto) => new Map(e.value.map((v) => [v.number, `${v.name}=${v.number}`]));

const methods = (service: ServiceDescriptorProto, rename: (typeName: string) => string) =>
  new Map(
    service.method.map((m) => [
      m.name,
      `${m.name}(${m.clientStreaming ? 'stream ' : ''}${rename(m.inputType)}) ${m.serverStreaming ? 'stream ' : ''}${rename(m.outputType)}`,
    ]),
  );

const same = (name: string) => name;

const containerd = findOnPath('containerd');

describe('proto/ matches the containerd binary on this host', { skip: containerd ? false : 'no containerd on PATH' }, () => {
  const ours = index(OUR_FILES.map((file) => file.proto));
  const upstream = index(containerd ? embeddedDescriptors(readFileSync(containerd)) : []);

  test('the binary yields the descriptors we compare with', () => {
    for (const name of [
      '.runtime.v1.PodSandboxConfig',
      '.containerd.services.sandbox.v1.ControllerUpdateRequest',
      '.containerd.task.v3.CreateTaskRequest',
      '.io.containerd.cgroups.v2.Metrics',
    ]) {
      assert.ok(upstream.messages.has(name), `${name} not found in ${containerd}`);
    }
  });

  test('every message field has the upstream number, name and type', (t) => {
    const conflicts: string[] = [];
    const additions: string[] = [];
    for (const [name, message] of ours.messages) {
      // A v3 task message must also equal its v2 twin, which our v2 service stands in for.
      const twins = name.startsWith('.containerd.task.v3.') ? [name, name.replace('.v3.', '.v2.')] : [name];
      for (const twin of twins) {
        const theirs = upstream.messages.get(twin);
        if (theirs) compare(twin, fields(message, same), fields(theirs, normalise), conflicts, additions);
        else conflicts.push(`${twin}: not in containerd`);
      }
    }
    for (const line of additions) t.diagnostic(line);
    assert.deepEqual(conflicts, []);
  });

  test('every enum value has the upstream name and number', (t) => {
    const conflicts: string[] = [];
    const additions: string[] = [];
    for (const [name, e] of ours.enums) {
      const theirs = upstream.enums.get(name);
      if (theirs) compare(name, enumValues(e), enumValues(theirs), conflicts, additions);
      else conflicts.push(`${name}: not in containerd`);
    }
    for (const line of additions) t.diagnostic(line);
    assert.deepEqual(conflicts, []);
  });

  test('every service method has the upstream message types and streaming', (t) => {
    const conflicts: string[] = [];
    const additions: string[] = [];
    for (const [name, service] of ours.services) {
      const theirs = upstream.services.get(name);
      if (theirs) compare(name, methods(service, same), methods(theirs, normalise), conflicts, additions);
      else conflicts.push(`${name}: not in containerd`);
    }
    for (const line of additions) t.diagnostic(line);
    assert.deepEqual(conflicts, []);
  });
});
