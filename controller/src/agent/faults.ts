/**
 * Test hook (enabled only with `kpx run --enable-fault-injection`): a Service annotated
 * `kpx.dev/test-fault: drop-endpoint-rule` gets the first endpoint jump of its service chain
 * removed after compiling, the kind of bug the verification gate exists to stop. End-to-end tests
 * use it to prove that a bad ruleset never reaches the node.
 */
import type { CompiledFamily } from '../compile/compile.ts';
import type { Chain } from '../compile/ruleset.ts';
import type { JsonObject } from '../model/fields.ts';

export const FAULT_ANNOTATION = 'kpx.dev/test-fault';

function faultyServices(services: readonly JsonObject[]): Set<string> {
  const out = new Set<string>();
  for (const s of services) {
    const meta = s.metadata as { namespace?: string; name?: string; annotations?: Record<string, string> } | undefined;
    if (meta?.annotations?.[FAULT_ANNOTATION] === 'drop-endpoint-rule') out.add(`${meta.namespace ?? 'default'}/${meta.name ?? ''}`);
  }
  return out;
}

export function injectFaults(compiled: CompiledFamily, services: readonly JsonObject[]): CompiledFamily {
  const faulty = faultyServices(services);
  if (faulty.size === 0) return compiled;
  const broken = new Set<string>();
  for (const sp of compiled.servicePorts) {
    if (!faulty.has(`${sp.servicePort.namespace}/${sp.servicePort.serviceName}`)) continue;
    for (const c of sp.natChains) if (c.startsWith('KUBE-SVC-') || c.startsWith('KUBE-SVL-')) broken.add(c);
  }
  const dropFirstEndpointJump = (chain: Chain): Chain => {
    const i = chain.rules.findIndex((r) => r.target.kind === 'jump' && r.target.chain.startsWith('KUBE-SEP-'));
    return i < 0 ? chain : { name: chain.name, rules: chain.rules.filter((_, j) => j !== i) };
  };
  return {
    ...compiled,
    ruleset: {
      family: compiled.ruleset.family,
      tables: compiled.ruleset.tables.map((t) => ({ name: t.name, chains: t.chains.map((c) => (broken.has(c.name) ? dropFirstEndpointJump(c) : c)) })),
    },
  };
}
