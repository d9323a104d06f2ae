// What one pod of a kind whose pods keep processes of their own (KindBenchmark.podProcesses)
// costs the host: those processes, on average over the pods of the fullest point, and the
// memory kuasard keeps per pod (its slope). The management plane's figures alone would leave the
// first out, and it is most of the cost.
import type { MemoryResult, PodMemoryCost } from './results.js';

export function podMemoryCost(memory: MemoryResult): PodMemoryCost | undefined {
  const point = [...memory.points].sort((a, b) => b.pods - a.pods).find((p) => (p.podProcesses?.pods ?? 0) > 0);
  const own = point?.podProcesses;
  if (!own) return undefined;
  const processesPssKb = own.pssKb / own.pods;
  const { anonymousKb, executableAnonymousKb, fileKb } = own.pssByMapping;
  const processesPssByMapping = {
    anonymousKb: anonymousKb / own.pods,
    executableAnonymousKb: executableAnonymousKb / own.pods,
    fileKb: fileKb / own.pods,
  };
  const processesPrivateKb = own.privateKb / own.pods;
  // As the marginal targets judge kuasard: private memory (after GC where read), else PSS.
  const kuasardKb = (memory.fitPrivate ?? memory.fit)?.slope ?? 0;
  return {
    pods: own.pods,
    processesPssKb,
    processesPssByMapping,
    processesPrivateKb,
    kuasardKb,
    pssKb: processesPssKb + kuasardKb,
    privateKb: processesPrivateKb + kuasardKb,
  };
}
