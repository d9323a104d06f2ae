// The verbose Controller.Status info: what CRI shows for `crictl inspectp` of a kuasar pod.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { ControllerCreateRequestSchema } from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import type { SandboxRecord } from '../../src/base/model.js';
import { createInfoOf, verboseInfo } from '../../src/services/sandbox-info.js';

// As CRI sends it: the handler's runtime type, and its own record of the pod as a JSON extension.
const criMetadata = {
  Version: 'v1',
  Metadata: {
    ID: 's1',
    Name: 'web_default_u1_0',
    Config: { metadata: { name: 'web' }, hostname: 'web-0' },
    NetNSPath: '/var/run/netns/cni-1',
    RuntimeHandler: 'kuasar-runc',
    CNIResult: { Interfaces: {} },
  },
};
const request = (extension: Uint8Array) =>
  create(ControllerCreateRequestSchema, {
    sandboxId: 's1',
    sandbox: {
      sandboxId: 's1',
      runtime: { name: 'io.containerd.runc.v2' },
      extensions: { metadata: { typeUrl: 'github.com/containerd/cri/pkg/store/sandbox/Metadata', value: extension } },
    },
  });

const record = (createInfo: Record<string, unknown> | undefined, phase: SandboxRecord['phase'] = 'ready') =>
  ({ id: 's1', pid: 0, phase, netnsPath: '/nonexistent/netns/cni-1', ...(createInfo ? { createInfo } : {}) }) as unknown as SandboxRecord;

test("verbose info carries the runtime type and handler, CRI's config and record, the pod's namespaces", () => {
  const kept = createInfoOf(request(new TextEncoder().encode(JSON.stringify(criMetadata))));
  // Kept in the state file: it must survive a JSON round trip.
  const stored = JSON.parse(JSON.stringify(kept)) as Record<string, unknown>;
  const { info } = verboseInfo(record(stored), 'kuasar-runc', { ipc: '/k/s1/ns/ipc', uts: '/k/s1/ns/uts' });
  const parsed = JSON.parse(info!) as Record<string, unknown>;
  assert.equal(parsed['runtimeType'], 'io.containerd.runc.v2');
  assert.equal(parsed['runtimeHandler'], 'kuasar-runc');
  assert.equal(parsed['sandboxer'], 'kuasar-runc');
  assert.equal(parsed['processStatus'], 'running');
  assert.equal(parsed['pid'], 0);
  assert.equal(parsed['netNamespaceClosed'], true, 'the netns path is gone');
  assert.deepEqual(parsed['config'], criMetadata.Metadata.Config);
  assert.deepEqual(parsed['cniResult'], criMetadata.Metadata.CNIResult);
  assert.deepEqual(parsed['sandboxMetadata'], criMetadata);
  assert.deepEqual(parsed['namespaces'], { ipc: '/k/s1/ns/ipc', uts: '/k/s1/ns/uts' });
});

test('verbose info of a sandbox with no (or an unreadable) CRI record, or from an older run, still names what is known', () => {
  for (const createInfo of [createInfoOf(request(new TextEncoder().encode('not json'))), undefined]) {
    const parsed = JSON.parse(verboseInfo(record(createInfo, 'stopped'), 'kuasar-runc', {}).info!) as Record<string, unknown>;
    assert.equal(parsed['processStatus'], 'stopped');
    assert.equal(parsed['sandboxer'], 'kuasar-runc');
    assert.equal(parsed['config'], null);
    assert.equal(parsed['sandboxMetadata'], null);
  }
  assert.equal(createInfoOf(request(new TextEncoder().encode('[1]')))['sandboxMetadata'], undefined, 'only a JSON object is kept');
});
