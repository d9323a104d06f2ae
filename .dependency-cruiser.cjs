// The layer rules of docs/architecture.md ("Layers"), checked by `npm run lint`. Type-only
// imports count: a layer that names another's types depends on it as much as one that calls it.
/** The folders below src/ that code running inside a guest (the vmm agent) may import. */
const GUEST_IMPORTABLE = '(base|linux|io|oci|rpc|api)';
/** Tools around the daemon; kuasard itself never loads them. */
const TOOLS = '(bench|devenv|cri|cli|install)';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'base-is-the-bottom',
      comment: 'src/base (errors, records, ids, metrics and stream types) imports nothing else of ours.',
      severity: 'error',
      from: { path: '^src/base/' },
      to: { path: '^src/', pathNot: '^src/base/' },
    },
    {
      name: 'guest-importable-layers',
      comment: 'base, linux, io, oci and rpc never need the host engine, the kinds or the daemon: a guest agent imports them alone.',
      severity: 'error',
      from: { path: `^src/(linux|io|oci|rpc)/` },
      to: { path: '^src/', pathNot: `^src/${GUEST_IMPORTABLE}/` },
    },
    {
      name: 'guest-agent-stays-in-the-guest',
      comment: 'The guest agent runs inside the VM, bundled alone: it imports the guest-importable layers and nothing of the host daemon.',
      severity: 'error',
      from: { path: '^src/guest/agent/' },
      to: { path: '^src/', pathNot: [`^src/${GUEST_IMPORTABLE}/`, '^src/guest/agent/'] },
    },
    {
      name: 'linux-below-io-oci-rpc',
      comment: 'linux wraps the kernel; io, oci and rpc build on it, never the other way.',
      severity: 'error',
      from: { path: '^src/linux/' },
      to: { path: '^src/(io|oci|rpc)/' },
    },
    {
      name: 'kind-api-below-engine-and-kinds',
      comment: 'The kind interface is what the engine and the kinds share: it knows neither of them.',
      severity: 'error',
      from: { path: '^src/kind-api/' },
      to: { path: '^src/(engine|kinds|services|daemon)/' },
    },
    {
      name: 'engine-knows-only-the-kind-interface',
      comment: 'The engine (Sandboxer, Sandbox) drives kinds through src/kind-api only, and knows no protocol.',
      severity: 'error',
      from: { path: '^src/engine/' },
      to: { path: '^src/', pathNot: '^src/(base|kind-api|engine)/' },
    },
    {
      name: 'kinds-never-reach-the-engine',
      comment: 'A kind sees its sandbox through the kind interface, not through the engine, the services or the daemon.',
      severity: 'error',
      from: { path: '^src/kinds/' },
      to: { path: '^src/(engine|services|daemon)/' },
    },
    {
      name: 'kinds-stay-apart',
      comment: 'No kind imports another: what two kinds share lives in a layer below them.',
      severity: 'error',
      from: { path: '^src/kinds/([^/]+)/' },
      to: { path: '^src/kinds/[^/]+/', pathNot: '^src/kinds/$1/' },
    },
    {
      name: 'kinds-know-the-guest-only-by-its-image-layout',
      comment: "The guest's code runs in the VM; the host side knows only the image's file names (guest/image/layout.ts).",
      severity: 'error',
      from: { path: '^src/(kinds|engine|services|daemon|oci-kind)/' },
      to: { path: '^src/guest/', pathNot: '^src/guest/image/layout\\.ts$' },
    },
    {
      name: 'oci-kind-below-kinds',
      comment: 'What the kinds that drive an OCI runtime CLI share (containers, processes) sits below them and knows none of them.',
      severity: 'error',
      from: { path: '^src/oci-kind/' },
      to: { path: '^src/(engine|kinds|services|daemon|config)/' },
    },
    {
      name: 'services-below-daemon',
      comment: 'The protocol services adapt the engine; the daemon composes them, not the other way.',
      severity: 'error',
      from: { path: '^src/services/' },
      to: { path: '^src/(daemon|kinds)/' },
    },
    {
      name: 'daemon-ships-lean',
      comment: 'kuasard never loads the benchmark, the development environment, the CRI client or the CLI.',
      severity: 'error',
      from: { path: '^src/', pathNot: `^src/${TOOLS}/` },
      to: { path: `^src/${TOOLS}/` },
    },
    {
      name: 'guest-image-layout-stands-alone',
      comment: 'The image directory layout (file names, manifest) is what the vmm kind reads of the guest image: it imports nothing of ours.',
      severity: 'error',
      from: { path: '^src/guest/image/layout\\.ts$' },
      to: { path: '^src/' },
    },
    {
      name: 'image-builder-only-from-the-cli',
      comment: 'The guest image builder runs from `kuasar image build`; everything else (the vmm kind) sees only its layout module.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(cli|guest/image)/' },
      to: { path: '^src/guest/image/', pathNot: '^src/guest/image/layout\\.ts$' },
    },
    {
      name: 'image-builder-stands-on-base',
      comment: 'The image builder drives host tools; of ours it needs base at most.',
      severity: 'error',
      from: { path: '^src/guest/image/' },
      to: { path: '^src/', pathNot: '^src/(base|guest/image)/' },
    },
    {
      name: 'no-cycles',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/api/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.cts', '.mts', '.js', '.cjs', '.d.ts'] },
  },
};
