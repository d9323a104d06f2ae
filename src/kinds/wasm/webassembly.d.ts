// The few WebAssembly JS API types the wasm kind uses. TypeScript ships them only with the DOM
// libraries, which this project does not load (it runs on Node alone).
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
    static exports(module: Module): { name: string; kind: string }[];
  }
  function compile(bytes: Uint8Array): Promise<Module>;
  function validate(bytes: Uint8Array): boolean;
  class Memory {
    readonly buffer: ArrayBuffer;
  }
  type ExportValue = ((...args: unknown[]) => unknown) | Memory | unknown;
  type Imports = Record<string, Record<string, unknown>>;
  class Instance {
    constructor(module: Module, imports?: Imports);
    readonly exports: Record<string, ExportValue>;
  }
}
