/**
 * Extended accounting objects (`nfacct`), which the `-m nfacct --nfacct-name NAME` rules count
 * into (kube-proxy's ct_state_invalid_dropped_pkts and localhost_nps_accepted_pkts). The rules
 * fail to load unless the objects exist, so a full sync ensures them first.
 */
import { commandError, type CommandRunner } from './exec.ts';

/** Whether the nfacct tool runs and the kernel answers it. */
export async function nfacctAvailable(runner: CommandRunner): Promise<boolean> {
  return (await runner.run('nfacct', ['list'])).exitCode === 0;
}

/** Packets counted so far; undefined if there is no such object. */
export async function readNfacct(runner: CommandRunner, name: string): Promise<number | undefined> {
  const result = await runner.run('nfacct', ['get', name]);
  if (result.exitCode !== 0) {
    if (result.stderr.includes('No such file or directory')) return undefined;
    throw commandError('nfacct', ['get', name], result);
  }
  // `{ pkts = 00000000000000000003, bytes = 00000000000000000252 } = NAME;`
  const pkts = /pkts = (\d+)/.exec(result.stdout)?.[1];
  if (pkts === undefined) throw new Error(`nfacct get ${name} printed no packet count: ${result.stdout.trim()}`);
  return Number(pkts);
}

/** Creates the object if it is missing; true if it already existed. */
export async function ensureNfacct(runner: CommandRunner, name: string): Promise<boolean> {
  const result = await runner.run('nfacct', ['add', name]);
  if (result.exitCode === 0) return false;
  // An existing object makes `add` fail (EBUSY or EEXIST, depending on the kernel): check it is there.
  if ((await readNfacct(runner, name)) !== undefined) return true;
  throw commandError('nfacct', ['add', name], result);
}
