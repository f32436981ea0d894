import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureSysctl, readSysctl, writeSysctl } from './sysctl.ts';

describe('sysctl', () => {
  let root = '';
  const seed = (name: string, value: string): void => {
    mkdirSync(dirname(join(root, name)), { recursive: true });
    writeFileSync(join(root, name), value);
  };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'kpx-sysctl-'));
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('reads the value without its trailing newline', async () => {
    seed('net/ipv4/conf/all/route_localnet', '0\n');
    await expect(readSysctl('net/ipv4/conf/all/route_localnet', root)).resolves.toBe('0');
  });

  it('writes the value with a newline, as /proc/sys expects', async () => {
    seed('net/netfilter/nf_conntrack_max', '65536\n');
    await writeSysctl('net/netfilter/nf_conntrack_max', 131072, root);
    expect(readFileSync(join(root, 'net/netfilter/nf_conntrack_max'), 'utf8')).toBe('131072\n');
  });

  it('ensureSysctl writes only when the value differs and says whether it changed', async () => {
    seed('net/ipv4/conf/all/route_localnet', '0\n');
    await expect(ensureSysctl('net/ipv4/conf/all/route_localnet', 1, root)).resolves.toBe(true);
    expect(readFileSync(join(root, 'net/ipv4/conf/all/route_localnet'), 'utf8')).toBe('1\n');
    await expect(ensureSysctl('net/ipv4/conf/all/route_localnet', '1', root)).resolves.toBe(false);
  });

  it('compares multi-value sysctls by their words (the kernel separates them with tabs)', async () => {
    seed('net/ipv4/ip_local_port_range', '32768\t60999\n');
    await expect(ensureSysctl('net/ipv4/ip_local_port_range', '32768 60999', root)).resolves.toBe(false);
    expect(readFileSync(join(root, 'net/ipv4/ip_local_port_range'), 'utf8')).toBe('32768\t60999\n');
  });

  it('fails for a sysctl the kernel does not have', async () => {
    await expect(readSysctl('net/netfilter/nf_conntrack_nope', root)).rejects.toThrow(/ENOENT/);
  });
});
