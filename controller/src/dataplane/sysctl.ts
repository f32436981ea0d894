/**
 * Kernel parameters through /proc/sys (reference §4.6, §5): `net/ipv4/conf/all/route_localnet`,
 * `net/netfilter/nf_conntrack_tcp_be_liberal`, ... Names use slashes, not dots, because interface
 * names in them may contain dots. The root is injectable so tests use a temporary directory.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const PROC_SYS = '/proc/sys';

/** The value, trimmed (multi-value sysctls keep their inner whitespace). */
export async function readSysctl(name: string, root = PROC_SYS): Promise<string> {
  return (await readFile(join(root, name), 'utf8')).trim();
}

export async function writeSysctl(name: string, value: string | number, root = PROC_SYS): Promise<void> {
  await writeFile(join(root, name), `${String(value)}\n`);
}

const words = (text: string): string => text.trim().split(/\s+/).join(' ');

/** Writes the value unless the sysctl already holds it; true if it changed. */
export async function ensureSysctl(name: string, value: string | number, root = PROC_SYS): Promise<boolean> {
  if (words(await readSysctl(name, root)) === words(String(value))) return false;
  await writeSysctl(name, value, root);
  return true;
}
