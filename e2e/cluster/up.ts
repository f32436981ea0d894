/**
 * `make cluster-up`: starts the real-cluster harness and leaves it running.
 *
 *   npx node e2e/cluster/up.ts [--nodes N] [--kube-proxy] [--demo] [--dir DIR]
 *
 *   --nodes N       node namespaces (default 2)
 *   --kube-proxy    run upstream kube-proxy (iptables mode) in every node namespace
 *   --demo          create Service default/web (NodePort, TCP+UDP 80 -> 8080) with 3 pods
 *   --dir DIR       state directory (default $KPX_CLUSTER_DIR or /tmp/kpx-cluster)
 *
 * Stop it with `make cluster-down` (e2e/cluster/down.ts), which finds everything through DIR/state.json.
 */
import { parseArgs } from 'node:util';
import { startCluster, type Cluster } from './cluster.ts';
import { startKubeProxy, waitForProgrammedEndpoints, type KubeProxy } from './kube-proxy.ts';
import { createPods, createWebService, waitForReadyEndpoints } from './pods.ts';
import { defaultStateDir } from './state.ts';
import { requireRoot } from './sys.ts';

async function demo(cluster: Cluster, proxies: readonly KubeProxy[]): Promise<string> {
  const web = await createPods(cluster, { name: 'web', replicas: 3 });
  const svc = await createWebService(cluster, web.labels);
  await waitForReadyEndpoints(cluster, 'default', 'web', 3);
  await Promise.all(proxies.map((proxy) => waitForProgrammedEndpoints(cluster, proxy, 'default/web:http', 3)));
  const nodePort = svc.spec.ports?.find((p) => p.name === 'http')?.nodePort ?? 0;
  const firstNode = cluster.nodes[0];
  return [
    `demo: Service default/web clusterIP ${svc.spec.clusterIP ?? '?'} port 80, nodePort ${String(nodePort)}; pods ${web.pods.map((p) => `${p.name}=${p.ip}@${p.node}`).join(' ')}`,
    `  ip netns exec ${web.pods[0]?.netns ?? '?'} curl -s http://${svc.spec.clusterIP ?? '?'}/        # from a pod (needs a proxy on its node)`,
    `  ip netns exec ${cluster.external.netns} curl -s http://${firstNode?.ip ?? '?'}:${String(nodePort)}/   # NodePort from the external client`,
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '2' },
      'kube-proxy': { type: 'boolean', default: false },
      demo: { type: 'boolean', default: false },
      dir: { type: 'string' },
    },
  });
  requireRoot();
  const t0 = Date.now();
  const log = (message: string): void => {
    console.error(`cluster-up: ${message}`);
  };
  const cluster = await startCluster({ owner: 'cli', nodes: Number.parseInt(values.nodes, 10), stateDir: values.dir ?? defaultStateDir(), log });
  let demoText = '';
  try {
    let proxies: KubeProxy[] = [];
    if (values['kube-proxy']) {
      proxies = await Promise.all(cluster.nodes.map((node) => startKubeProxy(cluster, node.name)));
      log('upstream kube-proxy synced on every node');
    }
    if (values.demo) demoText = await demo(cluster, proxies);
  } catch (error) {
    log(`failed after the control plane started, tearing down: ${error instanceof Error ? error.message : String(error)}`);
    await cluster.stop();
    throw error;
  }
  const s = cluster.state;
  const lines = [
    `cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s; state, logs, PKI and kubeconfigs in ${s.dir}`,
    '',
    `  export KUBECONFIG=${s.kubeconfigs.admin}`,
    `  ${cluster.kubectlPath} get nodes -o wide      # kubectl v1.37.1 from the pinned build`,
    `  apiserver ${s.apiserver.url}  service CIDR ${s.serviceCIDR}  cluster CIDR ${s.clusterCIDR}`,
    `  kube-proxy identity (system:kube-proxy): ${s.kubeconfigs.kubeProxy}`,
    '',
    ...s.nodes.map((n) => `  ${n.name}  InternalIP ${n.ip}  zone ${n.zone}  podCIDR ${n.podCIDR}  netns ${n.netns}   e.g. ip netns exec ${n.netns} iptables-save -t nat`),
    `  external client  ${s.external.ip}  netns ${s.external.netns}`,
    ...(values['kube-proxy'] ? [`  upstream kube-proxy runs in every node netns; logs in ${s.dir}/logs/`] : []),
    ...(demoText === '' ? [] : ['', demoText]),
    '',
    `  stop everything: make cluster-down   (or: npx node e2e/cluster/down.ts${values.dir === undefined ? '' : ` --dir ${s.dir}`})`,
  ];
  console.log(lines.join('\n'));
  cluster.api.close();
}

try {
  await main();
  // The daemons run in their own sessions and keep running; nothing here should hold the process.
  process.exit(0);
} catch (error) {
  console.error(`cluster-up: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
