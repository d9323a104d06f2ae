// Makes a module suspendable, so that many instances share one worker thread (instance-worker.cts):
// binaryen's asyncify lets an instance unwind its stack at chosen host calls and be rewound later,
// and a fuel check at every function entry and loop header calls the host now and then, so that a
// module that computes without calling the host still gives up its thread (a time slice) and sees
// Kill. Runs in the rewriter's own thread only (rewriter-thread.ts): binaryen is a large module
// that kuasard never keeps loaded.
//
// The fuel check comes from binaryen's log-execution pass, which calls an import at every function
// entry and loop header: that import is replaced by a function of the module's own (decrement a
// global; at zero refill it and call kuasar.yield), which the optimizer then inlines.
import binaryen from 'binaryen';
import { SUSPENDING_IMPORTS, YIELD_IMPORT } from './suspendable-imports.cjs';

/** Fuel checks between two calls to kuasar.yield: the host reads the clock there (cheap beside that many iterations). */
const FUEL = 10_000;
/** The fuel check's size in binaryen's measure (its expressions): functions this small are always inlined. */
const FUEL_CHECK_SIZE = 16;
/** The internal name log-execution gives its import. */
const LOG_EXECUTION = 'log_execution';

/** `module` with fuel checks and asyncify; throws on a module binaryen cannot read. */
export function makeSuspendable(module: Uint8Array): Uint8Array {
  const m = binaryen.readBinary(module);
  try {
    // Features the engine has (Node 20's V8 11.3): what binaryen may read and must keep.
    m.setFeatures(
      binaryen.Features.MVP |
        binaryen.Features.MutableGlobals |
        binaryen.Features.NontrappingFPToInt |
        binaryen.Features.SignExt |
        binaryen.Features.BulkMemory |
        binaryen.Features.SIMD128 |
        binaryen.Features.Multivalue |
        binaryen.Features.ReferenceTypes,
    );
    m.runPasses(['log-execution']);
    replaceLogExecution(m);
    binaryen.setOptimizeLevel(2);
    binaryen.setShrinkLevel(0);
    // Inlined first (the fuel check is small, but called from many places), so that asyncify
    // sees each fuel check's call to kuasar.yield in place.
    const alwaysInline = binaryen.getAlwaysInlineMaxSize();
    binaryen.setAlwaysInlineMaxSize(FUEL_CHECK_SIZE);
    m.runPasses(['inlining-optimizing']);
    binaryen.setAlwaysInlineMaxSize(alwaysInline);
    binaryen.setPassArgument('asyncify-imports', SUSPENDING_IMPORTS.join(','));
    m.runPasses(['asyncify']);
    m.optimize();
    if (!m.validate()) throw new Error('the rewritten module does not validate');
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

function replaceLogExecution(m: binaryen.Module): void {
  const fuel = 'kuasar_fuel';
  const yieldFn = 'kuasar_yield';
  m.removeFunction(LOG_EXECUTION);
  m.addGlobal(fuel, binaryen.i32, true, m.i32.const(FUEL));
  m.addFunctionImport(yieldFn, YIELD_IMPORT.module, YIELD_IMPORT.name, binaryen.none, binaryen.none);
  m.addFunction(
    LOG_EXECUTION,
    binaryen.createType([binaryen.i32]),
    binaryen.none,
    [],
    m.block(null, [
      m.global.set(fuel, m.i32.sub(m.global.get(fuel, binaryen.i32), m.i32.const(1))),
      m.if(
        m.i32.le_s(m.global.get(fuel, binaryen.i32), m.i32.const(0)),
        m.block(null, [m.global.set(fuel, m.i32.const(FUEL)), m.call(yieldFn, [], binaryen.none)]),
      ),
    ]),
  );
}
