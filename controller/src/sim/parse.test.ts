import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileFamily } from '../compile/compile.ts';
import { renderRestore, renderRuleset, renderSave, standaloneRuleset } from '../compile/render.ts';
import { buildProxyModels, classifyObjects } from '../model/cluster.ts';
import { decodeDocuments } from '../model/documents.ts';
import { normalizeRuleset, quantizedProbability } from './normalize.ts';
import { parseRuleset, RulesetParseError, splitWords } from './parse.ts';

const read = (path: string): string => readFileSync(new URL(path, import.meta.url), 'utf8');

function compileExample() {
  const { state } = classifyObjects(decodeDocuments(read('../../../examples/cluster.yaml'), 'examples/cluster.yaml'));
  const [model] = buildProxyModels(state).families;
  if (model === undefined) throw new Error('no model');
  return compileFamily(model);
}

describe('splitWords', () => {
  it('keeps quoted words together and unescapes quotes', () => {
    expect(splitWords('-m comment --comment "a b" -j X')).toEqual(['-m', 'comment', '--comment', 'a b', '-j', 'X']);
    expect(splitWords('--comment "say \\"hi\\""')).toEqual(['--comment', 'say "hi"']);
    expect(() => splitWords('--comment "open')).toThrow('unterminated quote');
  });
});

describe('parseRuleset', () => {
  it('round-trips kpx restore and save output exactly', () => {
    const compiled = compileExample();
    expect(parseRuleset(renderRestore(compiled))).toEqual(compiled.ruleset);
    expect(parseRuleset(renderSave(compiled))).toEqual(standaloneRuleset(compiled));
  });

  it('reads what nf_tables iptables-save printed for the example and normalises it to kpx output', () => {
    // The fixture is the kernel's own read-back of `kpx preview -o save` (iptables 1.8.9, nf_tables).
    const kernel = normalizeRuleset(parseRuleset(read('testdata/example-readback.nft.save')));
    const ours = normalizeRuleset(standaloneRuleset(compileExample()));
    expect(renderRuleset(kernel)).toBe(renderRuleset(ours));
  });

  it('parses the kernel spellings it normalises', () => {
    const text = [
      '*nat',
      ':KUBE-X - [0:0]',
      '-A KUBE-X -p tcp -m comment --comment "a b" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-A --mask 255.255.255.255 --rsource -m tcp --dport 80 -j KUBE-X',
      '-A KUBE-X -m statistic --mode random --probability 0.33333333349 -j MARK --set-xmark 0x4000/0x4000',
      'COMMIT',
    ].join('\n');
    const [rule1, rule2] = parseRuleset(text).tables[0]?.chains[0]?.rules ?? [];
    expect(rule1?.clauses).toEqual([
      { kind: 'protocol', protocol: 'tcp', negate: false, module: true },
      { kind: 'comment', text: 'a b' },
      { kind: 'recent', name: 'KUBE-SEP-A', action: 'rcheck', seconds: 10800, reap: true, side: 'rsource', mask: '255.255.255.255' },
      { kind: 'destinationPort', from: 80, to: 80, negate: false },
    ]);
    expect(rule2?.target).toEqual({ kind: 'MARK', op: 'set-xmark', value: '0x4000', mask: '0x4000' });
    // The kernel stores 1/3 as a 31-bit fraction; both spellings land on the same value.
    expect(quantizedProbability('0.33333333349')).toBe(quantizedProbability('0.3333333333'));
  });

  it('names the line of anything it cannot model', () => {
    const bad = (rule: string): unknown => {
      try {
        parseRuleset(`*filter\n:INPUT ACCEPT [0:0]\n${rule}\nCOMMIT\n`);
      } catch (error) {
        return error;
      }
      return undefined;
    };
    const e1 = bad('-A INPUT -m hashlimit --hashlimit-upto 5/sec -j ACCEPT');
    expect(e1).toBeInstanceOf(RulesetParseError);
    expect((e1 as RulesetParseError).line).toBe(3);
    expect((e1 as Error).message).toBe('line 3: match module "hashlimit" is not supported');
    expect((bad('-A INPUT -j TPROXY --on-port 1') as Error).message).toBe('line 3: target TPROXY is not supported');
    expect((bad('-A NOPE -j ACCEPT') as Error).message).toBe('line 3: chain NOPE is not declared in table filter');
    expect((bad('-A INPUT -s 300.1.1.1 -j ACCEPT') as Error).message).toBe('line 3: "300.1.1.1" is not an address or CIDR');
    expect((bad('-A INPUT -m tcp --dport 22 -j ACCEPT') as Error).message).toBe('line 3: -m tcp needs -p tcp');
  });

  it('applies -X lines and rejects a table without COMMIT', () => {
    const r = parseRuleset('*nat\n:A - [0:0]\n:B - [0:0]\n-X B\nCOMMIT\n');
    expect(r.tables[0]?.chains.map((c) => c.name)).toEqual(['A']);
    expect(() => parseRuleset('*nat\n:A - [0:0]\n')).toThrow('has no COMMIT');
  });
});
