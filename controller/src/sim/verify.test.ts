// Mutation tests: correct rulesets broken the way real incidents break them; the verifier must
// catch each one and say precisely what is wrong.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileFamily, type CompiledFamily } from '../compile/compile.ts';
import { renderSave } from '../compile/render.ts';
import { buildProxyModels, classifyObjects } from '../model/cluster.ts';
import { decodeDocuments } from '../model/documents.ts';
import { parseRuleset } from './parse.ts';
import { formatViolation, verifyCompiled } from './verify.ts';

function example(): CompiledFamily {
  const text = readFileSync(new URL('../../../examples/cluster.yaml', import.meta.url), 'utf8');
  const [model] = buildProxyModels(classifyObjects(decodeDocuments(text, 'cluster.yaml')).state).families;
  if (model === undefined) throw new Error('no model');
  return compileFamily(model);
}

const compiled = example();
const save = renderSave(compiled);

/** Applies a text edit to the save dump (which must change it) and verifies the result. */
function verifyMutant(edit: (text: string) => string): string[] {
  const mutated = edit(save);
  expect(mutated).not.toBe(save);
  return verifyCompiled(compiled, { ruleset: parseRuleset(mutated) }).violations.map(formatViolation);
}

const lineWith = (text: string, ...needles: string[]): string => {
  const line = text.split('\n').find((l) => needles.every((n) => l.includes(n)));
  if (line === undefined) throw new Error(`no line with ${needles.join(' ')}`);
  return line;
};
const dropLine = (...needles: string[]) => (t: string): string => t.replace(`${lineWith(t, ...needles)}\n`, '');

describe('verifyCompiled', () => {
  it('passes the compiled example with every check', () => {
    const report = verifyCompiled(compiled);
    expect(report.violations).toEqual([]);
    expect(report.checks).toBeGreaterThan(60);
  });

  it('catches a dropped endpoint rule (one endpoint unreachable, traffic falling through un-NATed)', () => {
    const v = verifyMutant(dropLine('-A KUBE-SVC-TCOU7JCQXEZGVUNU', '-> 10.244.2.4:53'));
    expect(v).toContain(
      'structure: nat/KUBE-SEP-RJHMR3QLYGJVBWVL: chain KUBE-SEP-RJHMR3QLYGJVBWVL is never jumped to',
    );
    expect(v).toContain(
      'kube-system/kube-dns:dns/UDP via ClusterIP 10.96.0.10:53 from pod on this node (10.244.0.77): expected 10.244.1.3:53, 10.244.2.4:53 at 0.5 each, not masqueraded (all cluster endpoints), got ACCEPT without DNAT (p=0.5); ACCEPT to 10.244.1.3:53 (p=0.5): ACCEPT without DNAT with probability 0.5',
    );
  });

  it('catches a wrong probability (skewed balancing)', () => {
    const v = verifyMutant((t) => t.replace('-> 10.244.1.21:8080" -m statistic --mode random --probability 0.3333333333', '-> 10.244.1.21:8080" -m statistic --mode random --probability 0.5000000000'));
    expect(v.find((l) => l.startsWith('shop/frontend:http/TCP via ClusterIP 10.96.12.34:80 from pod on this node'))).toMatch(
      /10\.244\.1\.21:8080 has probability 0\.5 instead of 0\.333/,
    );
  });

  it('catches a missing masquerade (external traffic would return asymmetrically)', () => {
    const v = verifyMutant(dropLine('-A KUBE-EXT-FAXFPGMJVQWLKPGL', 'masquerade traffic for'));
    expect(v.find((l) => l.startsWith('shop/checkout:http/TCP via NodePort 10.89.0.10:30081 from an external client (203.0.113.77)'))).toContain(
      'expected 10.244.1.31:8080, 10.244.2.32:8080 at 0.5 each, masqueraded (all cluster endpoints, masqueraded (externalTrafficPolicy Cluster)), got ACCEPT to 10.244.1.31:8080 (p=0.5); ACCEPT to 10.244.2.32:8080 (p=0.5): masquerade off for 10.244.1.31:8080',
    );
  });

  it('catches a jump to a missing chain', () => {
    const v = verifyMutant((t) => t.replace('-j KUBE-SEP-EJJ3L23ZA35VLW6X\n', '-j KUBE-SEP-DOESNOTEXIST0000\n'));
    expect(v).toContain('structure: nat/KUBE-SVC-TCOU7JCQXEZGVUNU: rule 2 of KUBE-SVC-TCOU7JCQXEZGVUNU jumps to KUBE-SEP-DOESNOTEXIST0000, which does not exist');
  });

  it('catches REJECT swapped for DROP (clients hang instead of failing fast)', () => {
    const v = verifyMutant((t) => t.replace('"shop/reports:http has no endpoints" -m tcp -p tcp -d 10.96.90.9 --dport 80 -j REJECT', '"shop/reports:http has no endpoints" -m tcp -p tcp -d 10.96.90.9 --dport 80 -j DROP'));
    expect(v).toContain('shop/reports:http/TCP via ClusterIP 10.96.90.9:80 from pod on this node (10.244.0.77): expected REJECT (the service has no endpoints), got DROP (p=1): the outcome differs');
  });

  it('catches a lost source-range filter (the LB open to everyone)', () => {
    const v = verifyMutant(dropLine('-A KUBE-PROXY-FIREWALL', 'shop/payments:https traffic not accepted'));
    expect(v.find((l) => l.startsWith('shop/payments:https/TCP via LoadBalancer IP 203.0.113.20:443 from an external client (203.0.113.77)'))).toContain(
      'expected DROP (the source is outside loadBalancerSourceRanges), got ACCEPT without DNAT (p=1)',
    );
  });

  it('verifying only some service ports (a partial sync) finds exactly their violations', () => {
    const ruleset = parseRuleset(dropLine('-A KUBE-SVC-TCOU7JCQXEZGVUNU', '-> 10.244.2.4:53')(save));
    const full = verifyCompiled(compiled, { ruleset }).violations.map(formatViolation);
    const dns = compiled.servicePorts.find((sp) => sp.servicePort.key.startsWith('kube-system/kube-dns:dns/'));
    if (dns === undefined) throw new Error('no kube-dns service port');
    const partial = verifyCompiled(compiled, { ruleset, only: new Set([dns.servicePort.key]) });
    expect(partial.violations.map(formatViolation)).toEqual(full.filter((l) => l.startsWith('structure: ') || l.startsWith('kube-system/kube-dns:dns/UDP ')));
    expect(partial.violations.length).toBeGreaterThan(2);
    expect(partial.checks).toBeLessThan(10);
  });

  it('catches a rule that captures non-service traffic', () => {
    const v = verifyMutant((t) => t.replace('-A KUBE-NODEPORTS -m comment --comment shop/checkout:http -m tcp -p tcp --dport 30081', '-A KUBE-NODEPORTS -m comment --comment shop/checkout:http -m tcp -p tcp --dport 22'));
    expect(v.find((l) => l.startsWith('non-service traffic via node 10.89.0.10:22 from an external client'))).toContain('expected no DNAT and no masquerade (no Service uses this port)');
  });
});

describe('verifyCompiled edge cases', () => {
  it('expects REJECT for the node\'s own traffic to a local external IP of a Service without endpoints', () => {
    const yaml = `apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.0.0.5}]}
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: 10.244.0.0/16
---
apiVersion: v1
kind: Service
metadata: {namespace: a, name: b}
spec:
  clusterIP: 10.96.0.5
  externalIPs: [10.0.0.5, 192.0.2.99]
  ports: [{name: p, port: 8080, protocol: TCP}]
`;
    const [model] = buildProxyModels(classifyObjects(decodeDocuments(yaml, 'x')).state).families;
    if (model === undefined) throw new Error('no model');
    // The external IP on the node loops back through INPUT (REJECT); the other one leaves the node.
    expect(verifyCompiled(compileFamily(model)).violations.map(formatViolation)).toEqual([]);
  });
});
