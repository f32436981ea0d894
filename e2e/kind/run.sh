#!/usr/bin/env bash
# kpx in a kind cluster without kube-proxy (`make e2e-kind`; docs/e2e.md, section "kind"):
# create the cluster (e2e/kind/kind-config.yaml), build and load the image, install the chart with
# docs/install.md's quick-start flags, wait for kpx and CoreDNS, deploy e2e/kind/workload.yaml and
# check from a client pod: the ClusterIP by IP and by DNS name, the NodePort on every node, and
# balancing over the 3 pods; then `helm test` and every node's NodeProxyStatus.
#
# Environment:
#   KPX_KIND_FRESH=1         delete an existing kind cluster named kpx first (default: reuse it)
#   KPX_KIND_KEEP=1          keep the cluster after a successful run (default: delete it)
#   KPX_KIND_NODE_IMAGE=IMG  kind node image for a new cluster (default: the one your kind pins)
#   ARTIFACTS=DIR            where diagnostics go on failure (default: reports/kind, emptied first)
#
# Exit status: 0 every check passed; 1 a step or check failed (diagnostics are in $ARTIFACTS, the
# cluster is kept for inspection); 2 a required tool is missing or Docker does not answer (nothing
# was touched).
#
# kubectl and helm use a kubeconfig of their own (a temporary file), so the run never acts on
# another cluster and never changes your current context.
set -Eeuo pipefail

# Prerequisites first, with shell builtins only (and docker itself when it is there): this check must
# work whatever PATH holds, and it names everything that is missing at once.
missing=()
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
daemon_down=0
if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then daemon_down=1; fi
if ((${#missing[@]} > 0 || daemon_down)); then
  {
    if ((${#missing[@]} > 0)); then
      list="${missing[*]}"
      printf 'e2e-kind: cannot run: missing %s (not found on PATH). Install:\n' "${list// /, }"
      for tool in "${missing[@]}"; do
        case $tool in
          docker) url=https://docs.docker.com/engine/install/ ;;
          kind) url=https://kind.sigs.k8s.io/docs/user/quick-start/#installation ;;
          kubectl) url=https://kubernetes.io/docs/tasks/tools/#kubectl ;;
          *) url=https://helm.sh/docs/intro/install/ ;;
        esac
        printf '  %-8s %s\n' "$tool" "$url"
      done
    fi
    if ((daemon_down)); then
      printf 'e2e-kind: cannot run: docker is installed but its daemon does not answer (docker info failed). Start Docker, or check DOCKER_HOST and your permission on the Docker socket.\n'
    fi
    printf 'Machines without Docker cannot run the kind e2e; .github/workflows/e2e-kind.yml runs it on GitHub Actions.\n'
  } >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
artifacts="${ARTIFACTS:-$root/reports/kind}"
# The default directory is ours: clear what an earlier run left, so it only ever holds this run's.
if [[ -z ${ARTIFACTS:-} ]]; then rm -rf "$artifacts"; fi
mkdir -p "$artifacts"
artifacts="$(cd "$artifacts" && pwd)"
cd "$root"

kubeconfig_dir="$(mktemp -d)"
export KUBECONFIG="$kubeconfig_dir/kubeconfig"
trap 'rm -rf "$kubeconfig_dir"' EXIT

readonly REQUESTS=60 MIN_PER_POD=5

step() { printf '\n== [%ss] %s\n' "$SECONDS" "$*"; }
# fail MESSAGE: a check failed; says why (the ERR trap then collects diagnostics).
check_failed=0
fail() {
  printf 'e2e-kind: FAIL: %s\n' "$*" >&2
  check_failed=1
  return 1
}

cluster_exists() {
  local clusters
  clusters="$(kind get clusters 2>/dev/null)" || return 1
  grep -qx kpx <<<"$clusters"
}

# Everything an operator needs to see why a check failed. Best effort: runs with errexit off.
collect_diagnostics() {
  local node save pod
  local -a pods=()
  printf '\n== collecting diagnostics into %s\n' "$artifacts"
  if ! cluster_exists; then
    echo "no kind cluster named kpx: nothing to collect"
    return 0
  fi
  kind export kubeconfig --name kpx >/dev/null 2>&1
  for node in $(kind get nodes --name kpx 2>/dev/null); do
    for save in iptables-save ip6tables-save iptables-nft-save iptables-legacy-save; do
      docker exec "$node" "$save" >"$artifacts/$node.$save.txt" 2>&1
    done
  done
  kubectl get nodeproxystatuses -o yaml >"$artifacts/nodeproxystatuses.yaml" 2>&1
  mapfile -t pods < <(kubectl -n kube-system get pods -o name 2>/dev/null | grep '^pod/kpx-')
  for pod in "${pods[@]}"; do
    kubectl -n kube-system logs "$pod" --all-containers --timestamps >"$artifacts/${pod#pod/}.log" 2>&1
    kubectl -n kube-system logs "$pod" --all-containers --timestamps --previous >"$artifacts/${pod#pod/}.previous.log" 2>&1
  done
  kubectl -n kube-system describe daemonset/kpx "${pods[@]}" >"$artifacts/kpx-describe.txt" 2>&1
  kubectl get nodes,pods -A -o wide >"$artifacts/pods.txt" 2>&1
  kubectl get events -A --sort-by=.lastTimestamp >"$artifacts/events.txt" 2>&1
  kubectl -n kpx-e2e get services,endpointslices -o yaml >"$artifacts/workload-services.yaml" 2>&1
  helm status kpx --namespace kube-system >"$artifacts/helm-status.txt" 2>&1
  kind export logs --name kpx "$artifacts/kind-logs" >/dev/null 2>&1
  ls "$artifacts"
}

on_failure() {
  local status=$? line=$1 command=$2
  # A failure inside $(...) or a pipeline also lands here, in the subshell: leave the report to
  # the main shell, which sees the failure next.
  if ((BASH_SUBSHELL > 0)); then exit "$status"; fi
  trap - ERR
  set +e
  if ((check_failed == 0)); then
    printf '\ne2e-kind: FAIL: exit status %s at e2e/kind/run.sh:%s: %s\n' "$status" "$line" "$command" >&2
  fi
  collect_diagnostics
  printf '\ne2e-kind: FAILED. Diagnostics: %s. The cluster is kept: run kind export kubeconfig --name kpx to inspect it, kind delete cluster --name kpx to remove it.\n' "$artifacts" >&2
  exit 1
}
trap 'on_failure "$LINENO" "$BASH_COMMAND"' ERR

# retry SECONDS COMMAND...: runs COMMAND every 2 s until it succeeds or SECONDS have passed.
# COMMAND runs in a condition, where errexit is off: functions given here return their status.
retry() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 2
  done
}

# requests FROM URL COUNT: COUNT HTTP GETs, each a new connection, from the client pod (FROM=pod) or
# from the control-plane node's own network namespace (FROM=node, a client outside the pod network).
# Prints one answer per line: the answering pod's name, or ERR.
requests() {
  # shellcheck disable=SC2016 # expanded by the remote shell
  local loop='for i in $(seq "$2"); do curl -sS --max-time 3 "$1" || printf ERR; echo; done'
  case $1 in
    pod) kubectl -n kpx-e2e exec client -- sh -c "$loop" sh "$2" "$3" </dev/null ;;
    node) docker exec kpx-control-plane sh -c "$loop" sh "$2" "$3" </dev/null ;;
    *) return 2 ;;
  esac
}

is_echo_pod() {
  local pod
  for pod in "${echo_pods[@]}"; do
    if [[ $1 == "$pod" ]]; then return 0; fi
  done
  return 1
}

# expect_echo_pods FROM URL COUNT: every one of COUNT requests is answered by an echo pod.
expect_echo_pods() {
  local answers answer
  answers="$(requests "$1" "$2" "$3")" || return 1
  while IFS= read -r answer; do
    if ! is_echo_pod "$answer"; then
      printf '  %s from %s: got "%s", want one of %s\n' "$2" "$1" "$answer" "${echo_pods[*]}" >&2
      return 1
    fi
  done <<<"$answers"
}

has_node_proxy_status() { kubectl get nodeproxystatus "$1" >/dev/null 2>&1; }

create_cluster() {
  local image=()
  if [[ -n ${KPX_KIND_NODE_IMAGE:-} ]]; then image=(--image "$KPX_KIND_NODE_IMAGE"); fi
  kind create cluster --name kpx --config e2e/kind/kind-config.yaml "${image[@]}"
}

step "kind cluster kpx (kubeProxyMode: none)"
if cluster_exists; then
  if [[ ${KPX_KIND_FRESH:-0} == 1 ]]; then
    kind delete cluster --name kpx
    create_cluster
  else
    echo "reusing the existing kind cluster kpx (KPX_KIND_FRESH=1 recreates it)"
    kind export kubeconfig --name kpx
  fi
else
  create_cluster
fi
if kubectl -n kube-system get daemonset kube-proxy >/dev/null 2>&1; then
  fail "the kind cluster kpx runs kube-proxy, so it was not created from e2e/kind/kind-config.yaml; rerun with KPX_KIND_FRESH=1"
fi
kubectl wait --for=condition=Ready nodes --all --timeout=3m

step "image kpx:dev"
docker build -t kpx:dev .
kind load docker-image kpx:dev --name kpx
image_id="$(docker image inspect --format '{{.Id}}' kpx:dev)"

# The image-id annotation rolls the DaemonSet when a reused cluster gets a rebuilt kpx:dev.
step "helm upgrade --install kpx"
helm upgrade --install kpx ./charts/kpx --namespace kube-system \
  --set image.repository=kpx --set image.tag=dev --set image.pullPolicy=IfNotPresent \
  --set apiServer.host=kpx-control-plane --set apiServer.port=6443 \
  --set-string "podAnnotations.kpx\.dev/image-id=$image_id" \
  --wait --timeout 5m
kubectl -n kube-system rollout status ds/kpx --timeout=5m

# CoreDNS reaches the API server through the `kubernetes` Service: only kpx makes that work here.
step "CoreDNS ready"
kubectl -n kube-system rollout status deployment/coredns --timeout=5m

step "NodeProxyStatus Ready on every node"
for node in $(kubectl get nodes -o jsonpath='{.items[*].metadata.name}'); do
  retry 120 has_node_proxy_status "$node" || fail "no NodeProxyStatus for node $node after 2 minutes: kpx on that node has not reported (see its log)"
  kubectl wait --for=condition=Ready "nodeproxystatus/$node" --timeout=2m
done

step "test workload (e2e/kind/workload.yaml)"
kubectl apply -f e2e/kind/workload.yaml
kubectl -n kpx-e2e rollout status deployment/echo --timeout=3m
kubectl -n kpx-e2e wait --for=condition=Ready pod/client --timeout=3m
pod_names="$(kubectl -n kpx-e2e get pods -l app=echo -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')"
mapfile -t echo_pods <<<"$pod_names"
((${#echo_pods[@]} == 3)) || fail "want 3 echo pods, found ${#echo_pods[@]}: ${echo_pods[*]}"
cluster_ip="$(kubectl -n kpx-e2e get service echo -o jsonpath='{.spec.clusterIP}')"
node_port="$(kubectl -n kpx-e2e get service echo-nodeport -o jsonpath='{.spec.ports[0].nodePort}')"

# The first requests may race kpx's next sync: retry until they pass, then count.
step "ClusterIP $cluster_ip:80 from the client pod"
retry 60 expect_echo_pods pod "http://$cluster_ip/hostname" 10 || fail "the ClusterIP $cluster_ip:80 of kpx-e2e/echo does not answer from the client pod"

step "ClusterIP by DNS name echo.kpx-e2e.svc.cluster.local from the client pod"
retry 60 expect_echo_pods pod "http://echo.kpx-e2e.svc.cluster.local/hostname" 10 || fail "kpx-e2e/echo does not answer by its DNS name (CoreDNS is behind the kube-dns ClusterIP, which kpx programs)"

nodes="$(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')"
while read -r node ip; do
  step "NodePort $ip:$node_port ($node) from the client pod and from the control-plane node"
  retry 60 expect_echo_pods pod "http://$ip:$node_port/hostname" 10 || fail "NodePort $node_port on node $node ($ip) does not answer from the client pod"
  retry 60 expect_echo_pods node "http://$ip:$node_port/hostname" 10 || fail "NodePort $node_port on node $node ($ip) does not answer from the control-plane node"
done <<<"$nodes"

step "balancing: $REQUESTS requests to the ClusterIP, each a new connection"
answers="$(requests pod "http://$cluster_ip/hostname" "$REQUESTS")"
sort <<<"$answers" | uniq -c
for pod in "${echo_pods[@]}"; do
  count="$(grep -cxF "$pod" <<<"$answers" || true)"
  ((count >= MIN_PER_POD)) || fail "pod $pod answered $count of $REQUESTS requests to the ClusterIP; want at least $MIN_PER_POD for each of the 3 pods (the KUBE-SVC chain's probabilities are off, see the iptables-save dumps)"
done
failed="$(grep -cvxF -f <(printf '%s\n' "${echo_pods[@]}") <<<"$answers" || true)"
((failed == 0)) || fail "$failed of $REQUESTS requests to the ClusterIP failed or reached something other than the echo pods"

step "helm test kpx"
helm test kpx --namespace kube-system --logs

step "kubectl get nodeproxystatuses -o wide"
kubectl get nodeproxystatuses -o wide

trap - ERR
if [[ ${KPX_KIND_KEEP:-0} == 1 ]]; then
  step "keeping the kind cluster kpx: kind export kubeconfig --name kpx to use it, kind delete cluster --name kpx to remove it"
else
  step "deleting the kind cluster kpx (KPX_KIND_KEEP=1 keeps it)"
  kind delete cluster --name kpx
fi
printf '\ne2e-kind: all checks passed in %ss\n' "$SECONDS"
