import { describe, expect, it } from 'vitest';
import {
  checkProxyConfig,
  DEFAULT_PROXY_CONFIG,
  masqueradeMarkOf,
  parseDuration,
  readKubeProxyConfiguration,
  validateClusterCIDRs,
  validateMasqueradeBit,
  validateNodePortAddresses,
} from './config.ts';
import type { JsonObject } from './fields.ts';
import { FieldError } from './problem.ts';

function kpc(body: Record<string, unknown>): JsonObject {
  return { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', ...body };
}

function fieldError(fn: () => unknown): FieldError {
  try {
    fn();
  } catch (error) {
    if (error instanceof FieldError) return error;
    throw error;
  }
  throw new Error('expected a FieldError');
}

describe('masqueradeMarkOf: Go %#08x of 1 << bit (reference §1.3)', () => {
  it.each([
    [14, '0x00004000'],
    [0, '0x00000001'],
    [3, '0x00000008'],
    [15, '0x00008000'],
    [24, '0x01000000'],
    [31, '0x80000000'],
  ])('bit %i → %s', (bit, mark) => {
    expect(masqueradeMarkOf(bit)).toBe(mark);
  });
});

describe('parseDuration (Go durations)', () => {
  it.each([
    ['30s', 30_000],
    ['1m0s', 60_000],
    ['500ms', 500],
    ['1s', 1000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['0', 0],
    ['0s', 0],
  ])('%s → %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '30', 's', '30 s', '30sec', 'abc', '1m0'])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('defaults (reference §8)', () => {
  it('match kube-proxy iptables-mode defaults', () => {
    expect(DEFAULT_PROXY_CONFIG.masqueradeBit).toBe(14);
    expect(DEFAULT_PROXY_CONFIG.masqueradeAll).toBe(false);
    expect(DEFAULT_PROXY_CONFIG.localhostNodePorts).toBe(true);
    expect(DEFAULT_PROXY_CONFIG.detectLocalMode).toBe('ClusterCIDR');
    expect(DEFAULT_PROXY_CONFIG.syncPeriodMs).toBe(30_000);
    expect(DEFAULT_PROXY_CONFIG.minSyncPeriodMs).toBe(1_000);
    expect(DEFAULT_PROXY_CONFIG.clusterCIDRs).toEqual([]);
    expect(DEFAULT_PROXY_CONFIG.nodePortAddresses).toEqual([]);
    expect(DEFAULT_PROXY_CONFIG.conntrackTCPBeLiberal).toBe(false);
  });
});

describe('readKubeProxyConfiguration', () => {
  it('reads nothing from an empty object', () => {
    expect(readKubeProxyConfiguration(kpc({}))).toEqual({});
  });

  it('reads every supported field', () => {
    const out = readKubeProxyConfiguration(
      kpc({
        mode: 'iptables',
        hostnameOverride: ' Node-A ',
        bindAddress: '192.168.0.2',
        clusterCIDR: '10.0.0.0/8,fd00:10::/64',
        detectLocalMode: 'BridgeInterface',
        detectLocal: { bridgeInterface: 'br0', interfaceNamePrefix: 'veth' },
        iptables: {
          masqueradeAll: true,
          masqueradeBit: 3,
          localhostNodePorts: false,
          syncPeriod: '1m0s',
          minSyncPeriod: '500ms',
        },
        nodePortAddresses: ['192.168.0.0/24', 'primary'],
        conntrack: { tcpBeLiberal: true },
      }),
    );
    expect(out).toEqual({
      nodeName: 'node-a',
      bindAddress: '192.168.0.2',
      clusterCIDRs: ['10.0.0.0/8', 'fd00:10::/64'],
      detectLocalMode: 'BridgeInterface',
      bridgeInterface: 'br0',
      interfaceNamePrefix: 'veth',
      masqueradeAll: true,
      masqueradeBit: 3,
      localhostNodePorts: false,
      syncPeriodMs: 60_000,
      minSyncPeriodMs: 500,
      nodePortAddresses: ['192.168.0.0/24', 'primary'],
      conntrackTCPBeLiberal: true,
    });
  });

  it('reads a dual-stack clusterCIDR with whitespace', () => {
    expect(readKubeProxyConfiguration(kpc({ clusterCIDR: '10.244.0.0/16, fd00:10:244::/56' })).clusterCIDRs).toEqual([
      '10.244.0.0/16',
      'fd00:10:244::/56',
    ]);
  });

  it('reads syncPeriod "30s"', () => {
    expect(readKubeProxyConfiguration(kpc({ iptables: { syncPeriod: '30s' } })).syncPeriodMs).toBe(30_000);
  });

  it('accepts masqueradeBit 0 and 31', () => {
    expect(readKubeProxyConfiguration(kpc({ iptables: { masqueradeBit: 0 } })).masqueradeBit).toBe(0);
    expect(readKubeProxyConfiguration(kpc({ iptables: { masqueradeBit: 31 } })).masqueradeBit).toBe(31);
  });

  it.each([32, -1])('rejects masqueradeBit %i', (bit) => {
    const e = fieldError(() => readKubeProxyConfiguration(kpc({ iptables: { masqueradeBit: bit } })));
    expect(e.field).toBe('iptables.masqueradeBit');
    expect(e.message).toContain(String(bit));
  });

  it('rejects mode ipvs', () => {
    const e = fieldError(() => readKubeProxyConfiguration(kpc({ mode: 'ipvs' })));
    expect(e.field).toBe('mode');
    expect(e.message).toContain('"ipvs"');
  });

  it('rejects mode nftables', () => {
    const e = fieldError(() => readKubeProxyConfiguration(kpc({ mode: 'nftables' })));
    expect(e.field).toBe('mode');
    expect(e.message).toContain('"nftables"');
  });

  it('accepts an empty mode (iptables on Linux)', () => {
    expect(readKubeProxyConfiguration(kpc({ mode: '' }))).toEqual({});
  });

  it('rejects two cluster CIDRs of one family, naming the entry', () => {
    const e = fieldError(() => readKubeProxyConfiguration(kpc({ clusterCIDR: '10.0.0.0/8,10.1.0.0/16' })));
    expect(e.field).toBe('clusterCIDR[1]');
    expect(e.message).toContain('"10.1.0.0/16"');
  });

  it('rejects an invalid cluster CIDR', () => {
    const e = fieldError(() => readKubeProxyConfiguration(kpc({ clusterCIDR: '10.0.0.0/33' })));
    expect(e.field).toBe('clusterCIDR');
    expect(e.message).toContain('"10.0.0.0/33"');
  });

  it('rejects a bad duration', () => {
    const e = fieldError(() => readKubeProxyConfiguration(kpc({ iptables: { minSyncPeriod: '1 second' } })));
    expect(e.field).toBe('iptables.minSyncPeriod');
    expect(e.message).toContain('"1 second"');
  });

  it('rejects an unknown detectLocalMode', () => {
    const e = fieldError(() => readKubeProxyConfiguration(kpc({ detectLocalMode: 'PodCIDR' })));
    expect(e.field).toBe('detectLocalMode');
    expect(e.message).toContain('"PodCIDR"');
  });

  it('rejects a bad nodePortAddresses entry', () => {
    const e = fieldError(() => readKubeProxyConfiguration(kpc({ nodePortAddresses: ['192.168.0.0/24', '192.168.1.1'] })));
    expect(e.field).toBe('nodePortAddresses[1]');
    expect(e.message).toContain('"192.168.1.1"');
  });

  it('rejects a bad bindAddress and wrongly typed fields', () => {
    const b = fieldError(() => readKubeProxyConfiguration(kpc({ bindAddress: '0.0.0.0.0' })));
    expect(b.field).toBe('bindAddress');
    expect(b.message).toContain('"0.0.0.0.0"');
    const m = fieldError(() => readKubeProxyConfiguration(kpc({ iptables: { masqueradeAll: 'yes' } })));
    expect(m.field).toBe('iptables.masqueradeAll');
    const bit = fieldError(() => readKubeProxyConfiguration(kpc({ iptables: { masqueradeBit: '14' } })));
    expect(bit.field).toBe('iptables.masqueradeBit');
    expect(bit.message).toContain('"14"');
  });
});

describe('validators', () => {
  it('validateClusterCIDRs uses the bare field name for a single value', () => {
    expect(validateClusterCIDRs(['10.0.0.0/8'], '--cluster-cidr')).toEqual(['10.0.0.0/8']);
    expect(fieldError(() => validateClusterCIDRs(['nope'], '--cluster-cidr')).field).toBe('--cluster-cidr');
    expect(fieldError(() => validateClusterCIDRs(['fd00::/64', 'fd01::/64'], 'x')).field).toBe('x[1]');
  });

  it('validateNodePortAddresses accepts CIDRs and "primary"', () => {
    expect(validateNodePortAddresses(['0.0.0.0/0', ' ::/0 ', 'primary'], 'f')).toEqual(['0.0.0.0/0', '::/0', 'primary']);
    const e = fieldError(() => validateNodePortAddresses(['secondary'], 'f'));
    expect(e.field).toBe('f[0]');
    expect(e.message).toContain('"secondary"');
  });

  it('validateMasqueradeBit accepts 0..31 integers only', () => {
    expect(validateMasqueradeBit(0, 'b')).toBe(0);
    expect(validateMasqueradeBit(31, 'b')).toBe(31);
    expect(fieldError(() => validateMasqueradeBit(32, 'b')).message).toContain('32');
    expect(fieldError(() => validateMasqueradeBit(1.5, 'b')).field).toBe('b');
  });
});

describe('checkProxyConfig', () => {
  it('accepts the defaults', () => {
    expect(() => {
      checkProxyConfig(DEFAULT_PROXY_CONFIG);
    }).not.toThrow();
  });

  it('requires a bridge interface for BridgeInterface mode', () => {
    const e = fieldError(() => {
      checkProxyConfig({ ...DEFAULT_PROXY_CONFIG, detectLocalMode: 'BridgeInterface' });
    });
    expect(e.field).toBe('detectLocal.bridgeInterface');
  });

  it('requires an interface prefix for InterfaceNamePrefix mode', () => {
    const e = fieldError(() => {
      checkProxyConfig({ ...DEFAULT_PROXY_CONFIG, detectLocalMode: 'InterfaceNamePrefix' });
    });
    expect(e.field).toBe('detectLocal.interfaceNamePrefix');
  });

  it('rejects a bad node IP, naming its index and value', () => {
    const e = fieldError(() => {
      checkProxyConfig({ ...DEFAULT_PROXY_CONFIG, nodeIPs: ['192.168.0.2', '192.168.0.x'] });
    });
    expect(e.field).toBe('nodeIPs[1]');
    expect(e.message).toContain('"192.168.0.x"');
  });
});
