/**
 * `kpx run`: the node agent (DESIGN.md, "The CLI contract"). In-cluster config by default;
 * `--dry-run` computes, verifies and reports without touching iptables; `--cleanup` removes
 * everything kpx owns and exits.
 */
import { parseArgs } from 'node:util';
import { runAgent } from '../agent/agent.ts';
import { isLogLevel, jsonLogger } from '../agent/log.ts';
import { BACKEND_FLAG_VALUES, isBackendFlag } from '../dataplane/backend.ts';
import { KubeconfigError } from '../kube/kubeconfig.ts';
import { parseDuration } from '../model/config.ts';
import { stopSignal } from './signals.ts';
import { PROXY_OPTIONS, proxyOverrides, UsageError } from './args.ts';
import type { CommandIO } from './io.ts';

/** The proxy flags, without the offline commands' input and output flags. */
const PROXY_FLAGS = Object.fromEntries(Object.entries(PROXY_OPTIONS).filter(([name]) => name !== 'file' && name !== 'output')) as Omit<typeof PROXY_OPTIONS, 'file' | 'output'>;

const RUN_OPTIONS = {
  ...PROXY_FLAGS,
  kubeconfig: { type: 'string' },
  config: { type: 'string' },
  'hostname-override': { type: 'string' },
  'apiserver-host': { type: 'string' },
  'apiserver-port': { type: 'string' },
  'dry-run': { type: 'boolean' },
  cleanup: { type: 'boolean' },
  'healthz-bind-address': { type: 'string' },
  'metrics-bind-address': { type: 'string' },
  'min-sync-period': { type: 'string' },
  'sync-period': { type: 'string' },
  'log-level': { type: 'string' },
  'iptables-backend': { type: 'string' },
  'enable-fault-injection': { type: 'boolean' },
} as const;

const RUN_USAGE = `Usage: kpx run [options]

Runs the node agent: watches Services, EndpointSlices and this Node, and keeps the node's
iptables rules right, proving every ruleset before applying it. Rules stay in place on exit.

Options:
  --kubeconfig FILE            kubeconfig (default: in-cluster service account)
  --apiserver-host HOST        override the API server address (clusters without a working
  --apiserver-port PORT          "kubernetes" Service, e.g. kind with kubeProxyMode none)
  --config FILE                a KubeProxyConfiguration (flags override it)
  --hostname-override NAME     this node's name (default: $NODE_NAME, then the host name)
  --min-sync-period DURATION   coalesce changes for this long (default 1s)
  --sync-period DURATION       retry and drift-check interval (default 30s)
  --healthz-bind-address ADDR  default: the config's healthzBindAddress, else 0.0.0.0:10256
  --metrics-bind-address ADDR  default: the config's metricsBindAddress, else 127.0.0.1:10249
  --log-level LEVEL            debug, info, warn or error (default info)
  --iptables-backend MODE      auto, nft or legacy (default auto: the backend the node's
                                 existing rules use, like upstream iptables-wrapper)
  --dry-run                    compute, verify and report, never touch iptables
  --cleanup                    remove every rule and chain kpx owns, then exit
  --cluster-cidr, --detect-local-mode, --masquerade-all, --masquerade-bit, --nodeport-addresses,
  --localhost-nodeports, --service-proxy-name, --ip-family, ...: as in "kpx preview --help"
`;

function duration(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined) throw new UsageError(`--${flag} "${text}" is not a duration like "1s" or "30s"`);
  return ms;
}

/** After shutdown, exit even if a lingering handle (a socket, a timer) would keep the process up. */
const EXIT_GRACE_MS = 2000;

export async function runCommand(args: readonly string[], io: CommandIO): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: { ...RUN_OPTIONS, help: { type: 'boolean', short: 'h' } }, allowPositionals: false, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0] ?? 'invalid arguments', { cause: error });
  }
  const v = parsed.values;
  if (v.help === true) {
    io.stdout(RUN_USAGE);
    return 0;
  }
  const level = v['log-level'] ?? 'info';
  if (!isLogLevel(level)) throw new UsageError(`--log-level "${level}" is not one of debug, info, warn, error`);
  const backend = v['iptables-backend'] ?? 'auto';
  if (!isBackendFlag(backend)) throw new UsageError(`--iptables-backend "${backend}" is not one of ${BACKEND_FLAG_VALUES.join(', ')}`);
  const overrides = proxyOverrides(v);
  const node = v['hostname-override'];
  if (node !== undefined) overrides.nodeName = node;
  const minSync = duration('min-sync-period', v['min-sync-period']);
  if (minSync !== undefined) overrides.minSyncPeriodMs = minSync;
  const sync = duration('sync-period', v['sync-period']);
  if (sync !== undefined) {
    if (sync <= 0) throw new UsageError('--sync-period must be greater than 0');
    overrides.syncPeriodMs = sync;
  }
  const port = v['apiserver-port'];
  if (port !== undefined && !/^[0-9]{1,5}$/.test(port)) throw new UsageError(`--apiserver-port "${port}" is not a port number`);
  const log = jsonLogger({ level, write: io.stderr });
  try {
    const code = await runAgent({
      ...(v.kubeconfig === undefined ? {} : { kubeconfigPath: v.kubeconfig }),
      ...(v['apiserver-host'] === undefined ? {} : { apiServerHost: v['apiserver-host'] }),
      ...(port === undefined ? {} : { apiServerPort: Number(port) }),
      ...(v.config === undefined ? {} : { configFile: v.config }),
      overrides,
      dryRun: v['dry-run'] === true,
      cleanup: v.cleanup === true,
      iptablesBackend: backend,
      ...(v['healthz-bind-address'] === undefined ? {} : { healthzBindAddress: v['healthz-bind-address'] }),
      ...(v['metrics-bind-address'] === undefined ? {} : { metricsBindAddress: v['metrics-bind-address'] }),
      faultInjection: v['enable-fault-injection'] === true,
      log,
      stopSignal: stopSignal(),
    });
    setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
    return code;
  } catch (error) {
    if (error instanceof KubeconfigError) throw new UsageError(error.message, { cause: error });
    log.error('kpx stopped', { error: (error as Error).message });
    return 1;
  }
}
