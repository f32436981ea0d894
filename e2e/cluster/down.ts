/**
 * `make cluster-down`: stops whatever cluster-up (or a crashed test) left behind.
 *
 *   npx node e2e/cluster/down.ts [--dir DIR] [--keep-logs]
 *
 * Reads DIR/state.json (default $KPX_CLUSTER_DIR or /tmp/kpx-cluster), kills the recorded
 * processes by pid (process groups; only if the pid still runs the recorded program), kills anything
 * left inside the harness's network namespaces, deletes every kpxc-* network namespace and host
 * link (also ones the state file does not list), then removes DIR (or only state.json with
 * --keep-logs). Safe to run when nothing is running.
 */
import { parseArgs } from 'node:util';
import { defaultStateDir, listOurHostLinks, listOurNetns, loadState, teardown } from './state.ts';
import { requireRoot } from './sys.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, 'keep-logs': { type: 'boolean', default: false } } });
  requireRoot();
  const dir = values.dir ?? defaultStateDir();
  const state = loadState(dir);
  const leftovers = [...(await listOurNetns()), ...(await listOurHostLinks())];
  if (state === undefined && leftovers.length === 0) {
    console.log(`cluster-down: nothing to do (no ${dir}/state.json, no kpxc-* namespaces or links)`);
    return;
  }
  const log = (message: string): void => {
    console.log(`cluster-down: ${message}`);
  };
  if (state === undefined) log(`no state in ${dir}; sweeping leftover ${leftovers.join(', ')}`);
  await teardown(state, { sweep: true, keepDir: values['keep-logs'], log });
  const remaining = [...(await listOurNetns()), ...(await listOurHostLinks())];
  if (remaining.length > 0) throw new Error(`could not remove: ${remaining.join(', ')}`);
  log(values['keep-logs'] && state !== undefined ? `done; logs kept in ${dir}/logs` : 'done');
}

try {
  await main();
} catch (error) {
  console.error(`cluster-down: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
