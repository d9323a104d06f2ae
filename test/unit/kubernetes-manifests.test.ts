// deploy/kubernetes: every YAML document is a Kubernetes object that the API's schemas accept
// (kubernetes-models' validators, compiled from Kubernetes' OpenAPI document) with no field the
// schema does not know (the API server refuses those: strict field validation is kubectl's
// default), and says what kuasar does: a RuntimeClass per kind whose handler is the one `kuasar
// install` registers, the vmm kind's overhead, a node installer whose ConfigMap kuasard loads,
// whose script is the image's and passes shellcheck.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { RuntimeClass } from 'kubernetes-models/node.k8s.io/v1/RuntimeClass';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { parse as parseToml } from 'smol-toml';
import { parseAllDocuments } from 'yaml';
import { enabledKinds, parseConfig } from '../../src/config/config.js';
import { sandboxerName } from '../../src/config/containerd.js';
import { KIND_NAMES } from '../../src/kinds/index.js';
import { vmmConfigSchema } from '../../src/kinds/vmm/config.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DEPLOY = join(ROOT, 'deploy/kubernetes');
const run = promisify(execFile);

/** The kinds of object deploy/kubernetes holds, each with its schema's validator. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'node.k8s.io/v1/RuntimeClass': RuntimeClass,
  'apps/v1/DaemonSet': DaemonSet,
  'v1/ConfigMap': ConfigMap,
};

interface Manifest {
  file: string;
  object: { apiVersion: string; kind: string; metadata: { name: string }; [key: string]: unknown };
}

function manifests(): Manifest[] {
  return readdirSync(DEPLOY)
    .filter((name) => name.endsWith('.yaml'))
    .flatMap((name) =>
      parseAllDocuments(readFileSync(join(DEPLOY, name), 'utf8')).map((doc) => {
        assert.deepEqual(doc.errors, [], `${name}: YAML errors`);
        return { file: name, object: doc.toJS() as Manifest['object'] };
      }),
    );
}

/**
 * Validates `object` against its kind's schema and returns the paths of the fields the schema
 * does not define. The compiled validators read every property their schema defines (and walk
 * every key of a map), so a field of the object that the validator never touched is one the
 * schema does not know: the object is wrapped in proxies that record each read.
 */
function validate(object: Manifest['object']): string[] {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  assert.ok(model, `no schema for ${object.apiVersion} ${object.kind}: add it to MODELS`);
  const read = new Set<string>();
  const fields = new Set<string>();
  const watch = (value: unknown, path: string): unknown => {
    if (value === null || typeof value !== 'object') return value;
    for (const key of Object.keys(value)) fields.add(`${path}/${key}`);
    return new Proxy(value, {
      get(target, key, receiver) {
        const child = Reflect.get(target, key, receiver);
        if (typeof key !== 'string' || !Object.hasOwn(target, key)) return child;
        read.add(`${path}/${key}`);
        return watch(child, `${path}/${key}`);
      },
    });
  };
  // A model copies (reading every field of) the data it is given: its validator runs on the object itself.
  const instance = new model(object as never);
  instance.validate.call(watch(object, ''));
  return [...fields].filter((field) => !read.has(field));
}

describe('Kubernetes manifests (deploy/kubernetes)', () => {
  const all = manifests();

  it('are objects the Kubernetes API accepts, with no field its schema does not know', () => {
    assert.ok(all.length >= 6, `${all.length} documents`);
    for (const { file, object } of all) {
      assert.deepEqual(validate(object), [], `${file}: ${object.kind} ${object.metadata.name}: unknown fields`);
    }
  });

  it('the checks above fail for what the API server refuses: a missing field, a wrong type, an unknown field', () => {
    const daemonSet = all.find((m) => m.object.kind === 'DaemonSet')?.object;
    assert.ok(daemonSet);
    const broken = structuredClone(daemonSet);
    const container =
      (broken['spec'] as { template: { spec: { containers: Record<string, unknown>[] } } }).template.spec.containers[0] ?? {};
    container['imagePullPolicyy'] = 'Always';
    assert.deepEqual(validate(broken), ['/spec/template/spec/containers/0/imagePullPolicyy']);
    delete container['name'];
    assert.throws(() => validate(broken), /containers\/0 must have required property name/);
    const runtimeClass = { apiVersion: 'node.k8s.io/v1', kind: 'RuntimeClass', metadata: { name: 'x' }, handler: 'x' };
    assert.deepEqual(validate({ ...runtimeClass, handlr: 'x', metadata: { name: 'x', label: {} } as { name: string } }), [
      '/handlr',
      '/metadata/label',
    ]);
    assert.throws(() => validate({ ...runtimeClass, handler: 7 }), /data\/handler must be string/);
  });

  it("has a RuntimeClass per kind, named and handled as `kuasar install` registers it, scheduled on the kind's nodes", () => {
    const classes = all.filter((m) => m.object.kind === 'RuntimeClass').map((m) => m.object as unknown as RuntimeClass);
    assert.deepEqual(classes.map((c) => c.metadata?.name).sort(), KIND_NAMES.map(sandboxerName).sort());
    for (const kind of KIND_NAMES) {
      const runtimeClass = classes.find((c) => c.handler === sandboxerName(kind));
      assert.equal(runtimeClass?.metadata?.name, sandboxerName(kind));
      assert.deepEqual({ ...runtimeClass?.scheduling?.nodeSelector }, { [`kuasar.io/${kind}`]: 'true' });
    }
    // The memory kuasar adds to every VM, as the vmm kind's configuration has it by default.
    const vmm = classes.find((c) => c.handler === 'kuasar-vmm');
    assert.equal(vmm?.overhead?.podFixed?.['memory'], `${vmmConfigSchema.parse({}).memory_overhead_mib}Mi`);
    assert.ok(vmm?.overhead?.podFixed?.['cpu']);
  });

  it("runs the node installer privileged, in the host's PID namespace, with a ConfigMap that kuasard loads as its configuration", () => {
    const daemonSet = all.find((m) => m.object.kind === 'DaemonSet')?.object as unknown as DaemonSet;
    const pod = daemonSet.spec?.template.spec;
    assert.equal(pod?.hostPID, true);
    const container = pod?.containers[0];
    assert.equal(container?.securityContext?.privileged, true);
    assert.deepEqual(container?.args, ['install']);
    assert.equal(pod?.nodeSelector?.['kuasar.io/runtime'], 'true');

    const configMapName = pod?.volumes?.find((v) => v.configMap)?.configMap?.name;
    const configMap = all.find((m) => m.object.kind === 'ConfigMap' && m.object.metadata.name === configMapName)
      ?.object as unknown as ConfigMap;
    const config = parseConfig(parseToml(configMap.data?.['config.toml'] ?? ''));
    assert.deepEqual(
      enabledKinds(config).map((k) => k.name),
      ['runc', 'wasm'],
    );
    assert.equal(config.kinds.vmm.image_dir, '/opt/kuasar/current/vmm-image', 'the guest image the installer copies');

    // The image's entry point is the script, at the path the DaemonSet runs.
    const containerfile = readFileSync(join(DEPLOY, 'node-installer/Containerfile'), 'utf8');
    assert.ok(containerfile.includes(`COPY deploy/kubernetes/node-installer/node-installer.sh ${container?.command?.[0]}\n`));
  });

  it('has an installer script that bash parses and shellcheck passes', async () => {
    const script = join(DEPLOY, 'node-installer/node-installer.sh');
    await run('bash', ['-n', script]);
    const { stdout } = await run('shellcheck', ['--severity=style', script]);
    assert.equal(stdout, '');
  });
});
