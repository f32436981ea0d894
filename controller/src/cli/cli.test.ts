// Drives the real `kpx` launcher as a process, as tests outside the repo would.
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseRuleset } from '../sim/parse.ts';

const KPX = fileURLToPath(new URL('../../bin/kpx.js', import.meta.url));
const TESTDATA = fileURLToPath(new URL('../compile/testdata/', import.meta.url));

async function kpx(args: string[], input?: string) {
  const r = await execa(process.execPath, [KPX, ...args], { reject: false, ...(input === undefined ? {} : { input }) });
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

const service = (extra: string): string => `apiVersion: v1
kind: Service
metadata: {namespace: web, name: api}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, protocol: TCP}]
${extra}`;

describe('kpx preview', () => {
  it('previews the embedded example by default and exits 0', async () => {
    const r = await kpx(['preview']);
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith('*filter\n:KUBE-SERVICES - [0:0]\n')).toBe(true);
    expect(r.stdout).toContain('-A KUBE-SERVICES -m comment --comment "default/kubernetes:https cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y');
    // headless and ExternalName Services are noted, not errors
    expect(r.stderr).toContain('Service "shop/db": headless (clusterIP None) has no proxy rules; ignored');
    expect(parseRuleset(r.stdout).tables.map((t) => t.name)).toEqual(['filter', 'nat']);
  });

  it('reads several files, stdin, multi-document YAML and kind: List', async () => {
    const list = JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { namespace: 'web', name: 'api-1', labels: { 'kubernetes.io/service-name': 'api' } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: [{ addresses: ['10.1.0.5'] }] },
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'web', name: 'cfg' } },
      ],
    });
    const r = await kpx(['preview', '-f', '-', '-f', `${TESTDATA}overall-iptables-rules.yaml`, '--node-name', 'test-node'], `${service('')}---\n${list}`);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('-A KUBE-SEP-');
    expect(r.stdout).toContain('--to-destination 10.1.0.5:8080');
    expect(r.stdout).toContain('ns1/svc1:p80');
    expect(r.stderr).toContain('ConfigMap "web/cfg": kpx reads only Services, EndpointSlices, Nodes and a KubeProxyConfiguration; ignored');
  });

  it('exits 2 with one line naming the file, object and field for an invalid object, and skips it', async () => {
    const bad = service('').replace('port: 80', 'port: 70000');
    const r = await kpx(['preview', '-f', '-'], bad);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual(['kpx: error: <stdin>: Service "web/api": spec.ports[0].port: 70000 is out of range (1-65535); skipped']);
    expect(r.stdout).not.toContain('10.96.0.20');
    expect(r.stdout).not.toContain('Error:');
  });

  it('exits 2 for unreadable input without a stack trace', async () => {
    const yaml = await kpx(['preview', '-f', '-'], 'kind: Service\n  bad: [indent\n');
    expect(yaml.code).toBe(2);
    expect(yaml.stderr).toMatch(/^kpx: <stdin>:\d+: not valid YAML or JSON: /);
    expect(yaml.stderr).not.toContain('    at ');
    const missing = await kpx(['preview', '-f', '/nonexistent/cluster.yaml']);
    expect(missing).toMatchObject({ code: 2, stderr: 'kpx: /nonexistent/cluster.yaml: cannot read: ENOENT' });
  });

  it('exits 2 for bad flags, naming the flag', async () => {
    expect(await kpx(['preview', '--masquerade-bit', '40'])).toMatchObject({ code: 2, stderr: 'kpx: --masquerade-bit: 40 is out of range (0-31)' });
    expect(await kpx(['preview', '-o', 'yaml'])).toMatchObject({ code: 2, stderr: 'kpx: -o "yaml" is not one of restore, save, json, summary' });
    expect(await kpx(['preview', '--node-ip', '10.0.0.300'])).toMatchObject({ code: 2, stderr: 'kpx: --node-ip "10.0.0.300" is not a valid IP address' });
    expect((await kpx(['preview', '--bogus'])).code).toBe(2);
    expect((await kpx(['frobnicate'])).code).toBe(2);
  });

  it('prints a standalone save dump with the built-in chain jumps', async () => {
    const r = await kpx(['preview', '-o', 'save']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(':PREROUTING ACCEPT [0:0]');
    expect(r.stdout).toContain('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
  });

  it('prints json with the ruleset and the verification verdict per family', async () => {
    const r = await kpx(['preview', '-o', 'json']);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout) as { version: number; families: { family: string; verification: { passed: boolean } }[] };
    expect(json.version).toBe(1);
    expect(json.families.map((f) => [f.family, f.verification.passed])).toEqual([['IPv4', true], ['IPv6', true]]);
  });

  it('honours flags over the KubeProxyConfiguration', async () => {
    const r = await kpx(['preview', '--ip-family', 'ipv6', '--masquerade-bit', '3', '--masquerade-random-fully', 'false']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('-A KUBE-MARK-MASQ -j MARK --or-mark 0x00000008');
    expect(r.stdout).toContain('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE\n');
    expect(r.stdout).toContain('-d fd00:96::1234');
    expect(r.stdout).not.toContain('10.96.0.1 ');
  });

  it('shows a summary with the verdict', async () => {
    const r = await kpx(['preview', '-o', 'summary']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('shop/reports:http');
    expect(r.stdout).toContain('REJECT (no endpoints)');
    expect(r.stdout).toContain('verification: passed');
  });
});

describe('kpx trace', () => {
  it('explains a NodePort packet from an external client as JSON (documented shape)', async () => {
    const r = await kpx(['trace', '--src', '203.0.113.7', '--dst', '10.89.0.10', '--dport', '30081', '-o', 'json']);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout) as {
      version: number;
      packet: { protocol: string; source: string; destination: string };
      outcomes: { probability: number; verdict: string; matched: boolean; destination: string | null; masquerade: boolean; source: string; path: { table: string; chain: string; rule: string; line: number }[] }[];
    };
    expect(json.version).toBe(1);
    expect(json.packet).toMatchObject({ protocol: 'tcp', source: '203.0.113.7:40000', destination: '10.89.0.10:30081' });
    expect(json.outcomes.map((o) => [o.probability, o.verdict, o.matched, o.destination, o.masquerade, o.source])).toEqual([
      [0.5, 'ACCEPT', true, '10.244.1.31:8080', true, '10.89.0.10'],
      [0.5, 'ACCEPT', true, '10.244.2.32:8080', true, '10.89.0.10'],
    ]);
    // Each path step cites the line of `kpx preview -o save` holding that rule.
    const save = (await kpx(['preview', '-o', 'save'])).stdout.split('\n');
    for (const step of json.outcomes[0]?.path ?? []) expect(save[step.line - 1]).toBe(`-A ${step.chain} ${step.rule}`);
  });

  it('traces through a node dump with --rules and reports unsupported rules with their line', async () => {
    const dir = await import('node:fs/promises').then((fs) => fs.mkdtemp('/tmp/kpx-trace-'));
    const { writeFile } = await import('node:fs/promises');
    await writeFile(`${dir}/ok.save`, '*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n');
    const ok = await kpx(['trace', '--rules', `${dir}/ok.save`, '--node-ip', '192.0.2.1', '--src', '198.51.100.1', '--dst', '192.0.2.1', '--dport', '80']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('[100%] DROP');
    await writeFile(`${dir}/bad.save`, '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m hashlimit --hashlimit-upto 1/sec -j ACCEPT\nCOMMIT\n');
    const bad = await kpx(['trace', '--rules', `${dir}/bad.save`, '--src', '198.51.100.1', '--dst', '192.0.2.1', '--dport', '80']);
    expect(bad).toMatchObject({ code: 2, stderr: `kpx: ${dir}/bad.save: line 3: match module "hashlimit" is not supported` });
  });

  it('rejects incomplete packets with a usage error', async () => {
    expect(await kpx(['trace', '--src', '10.0.0.1', '--dst', '10.96.0.1'])).toMatchObject({ code: 2, stderr: 'kpx: --dport is required for this protocol' });
    expect(await kpx(['trace', '--src', '10.0.0.1', '--dst', 'fd00::1', '--dport', '80'])).toMatchObject({ code: 2, stderr: 'kpx: --src and --dst must be of the same IP family' });
  });
});

describe('kpx verify', () => {
  it('proves the embedded example and exits 0', async () => {
    const r = await kpx(['verify']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^IPv4: \d+ simulated connections, 0 violations$/m);
    expect(r.stdout).toContain('verdict: every check holds');
  });

  it('checks a node dump against the desired state: behaviour violations exit 3, rule differences listed', async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const dir = await mkdtemp('/tmp/kpx-verify-');
    const save = (await kpx(['preview', '-o', 'save'])).stdout;
    await writeFile(`${dir}/good.save`, save);
    expect((await kpx(['verify', '--rules', `${dir}/good.save`])).code).toBe(0);
    // Someone deleted the REJECT rule of a Service without endpoints: clients now hang.
    await writeFile(`${dir}/bad.save`, save.replace(/^-A KUBE-SERVICES .*shop\/reports:http has no endpoints.*\n/m, ''));
    const r = await kpx(['verify', '--rules', `${dir}/bad.save`, '-o', 'json']);
    expect(r.code).toBe(3);
    const json = JSON.parse(r.stdout) as { families: { passed: boolean; violations: { servicePort: string; expected: string }[]; ruleDifferences: string[] }[] };
    const [ipv4] = json.families;
    expect(ipv4?.passed).toBe(false);
    expect(ipv4?.violations[0]).toMatchObject({ servicePort: 'shop/reports:http/TCP', expected: 'REJECT (the service has no endpoints)' });
    expect(ipv4?.ruleDifferences).toEqual([
      'filter/KUBE-SERVICES: rules differ\n  - -d 10.96.90.9/32 -p tcp -m comment --comment "shop/reports:http has no endpoints" --dport 80 -j REJECT --reject-with icmp-port-unreachable',
    ]);
  });
});

describe('kpx diff', () => {
  it('reports exactly the frontends whose behaviour changes, between states and dumps alike', async () => {
    const { mkdtemp, writeFile, readFile } = await import('node:fs/promises');
    const dir = await mkdtemp('/tmp/kpx-diff-');
    const example = await readFile(fileURLToPath(new URL('../../../examples/cluster.yaml', import.meta.url)), 'utf8');
    // shop/reports gets an endpoint: its REJECT becomes a DNAT; nothing else changes.
    const changed = `${example}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: shop, name: reports-1, labels: {kubernetes.io/service-name: reports}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.244.1.90], nodeName: node-a}]
`;
    await writeFile(`${dir}/old.yaml`, example);
    await writeFile(`${dir}/new.yaml`, changed);
    const r = await kpx(['diff', `${dir}/old.yaml`, `${dir}/new.yaml`, '-o', 'json']);
    expect(r.code).toBe(1);
    const json = JSON.parse(r.stdout) as { differences: { frontend: string; client: string; old: string; new: string }[] };
    expect(json.differences.map((d) => [d.frontend, d.client, d.old, d.new])).toEqual([
      ['shop/reports:http cluster IP (tcp 10.96.90.9:80)', 'a pod on this node (10.244.0.77)', 'REJECT p=1', 'ACCEPT to 10.244.1.90:8080 p=1'],
      ['shop/reports:http cluster IP (tcp 10.96.90.9:80)', 'the node itself (10.89.0.10)', 'REJECT p=1', 'ACCEPT to 10.244.1.90:8080 (masqueraded) p=1'],
      ['shop/reports:http cluster IP (tcp 10.96.90.9:80)', 'an external client (203.0.113.77)', 'REJECT p=1', 'ACCEPT to 10.244.1.90:8080 (masqueraded) p=1'],
    ]);
    // A state and its own save dump behave the same.
    await writeFile(`${dir}/old.save`, (await kpx(['preview', '-o', 'save'])).stdout);
    expect((await kpx(['diff', `${dir}/old.yaml`, `${dir}/old.save`])).code).toBe(0);
    await writeFile(`${dir}/new.save`, (await kpx(['preview', '-f', `${dir}/new.yaml`, '-o', 'save'])).stdout);
    const dumps = await kpx(['diff', `${dir}/old.save`, `${dir}/new.save`, '--node-ip', '10.89.0.10', '--cluster-cidr', '10.244.0.0/16']);
    expect(dumps.code).toBe(1);
    expect(dumps.stdout.split('\n')[0]).toMatch(/^kpx diff .*old\.save -> .*new\.save \(IPv4\): \d+ probes, 3 behave differently$/);
  });
});

describe('kpx run', () => {
  it('rejects a bad --iptables-backend with one line naming the flag, before touching anything', async () => {
    const r = await kpx(['run', '--iptables-backend', 'nftables']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual(['kpx: --iptables-backend "nftables" is not one of auto, nft, legacy']);
    expect(r.stdout).toBe('');
    const help = await kpx(['run', '--help']);
    expect(help.stdout).toContain('--iptables-backend MODE      auto, nft or legacy (default auto');
  });
});
