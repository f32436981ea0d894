#!/usr/bin/env bash
# A stand-in for docker, kind, kubectl, helm and curl (linked under those names) so
# e2e/image/kind.test.ts can run e2e/kind/run.sh's whole flow on a machine without Docker.
# Each call is appended to $FAKE_STATE/calls.log as one line: the tool name, then each argument
# after a tab. The answers are just enough for run.sh's checks: 3 kind nodes, 3 echo pods that
# answer round robin.
#   FAKE_FAIL=TEXT        the call whose logged line contains TEXT fails (exit 1)
#   FAKE_STARVE=POD       that echo pod answers only the first request it would get
#   FAKE_CLUSTER=1        a kind cluster named kpx exists before the run
set -euo pipefail

tool="${0##*/}"
state="${FAKE_STATE:?FAKE_STATE must name the state directory of the fake tools}"
line="$tool"
for arg in "$@"; do line+=$'\t'"$arg"; done
printf '%s\n' "$line" >>"$state/calls.log"
if [[ -n ${FAKE_FAIL:-} && $line == *"$FAKE_FAIL"* ]]; then
  printf 'fake %s: injected failure\n' "$tool" >&2
  exit 1
fi

nodes=(kpx-control-plane kpx-worker kpx-worker2)
pods=(echo-7d9-aaaaa echo-7d9-bbbbb echo-7d9-ccccc)
args="$*"

case $tool in
  curl)
    # Round robin over the echo pods; FAKE_STARVE skips its pod after the first turn.
    n=$(($(cat "$state/curl.count" 2>/dev/null || echo 0) + 1))
    echo "$n" >"$state/curl.count"
    pod="${pods[$((n % 3))]}"
    if [[ $pod == "${FAKE_STARVE:-}" && $n -gt 3 ]]; then pod="${pods[$(((n + 1) % 3))]}"; fi
    printf '%s' "$pod"
    ;;
  docker)
    case $args in
      "image inspect"*) echo "sha256:0123456789abcdef" ;;
      "exec kpx-control-plane sh -c "*) shift 2 && exec "$@" ;;
      exec*) echo "# ${3:-} output on ${2:-}" ;;
      *) ;;
    esac
    ;;
  kind)
    case $args in
      "get clusters") if [[ -e $state/cluster || ${FAKE_CLUSTER:-0} == 1 ]]; then echo kpx; fi ;;
      "create cluster"*) touch "$state/cluster" ;;
      "delete cluster"*) rm -f "$state/cluster" ;;
      "get nodes"*) printf '%s\n' "${nodes[@]}" ;;
      "export logs"*) mkdir -p "${!#}" && echo "kind logs" >"${!#}/kind-version.txt" ;;
      *) ;;
    esac
    ;;
  kubectl)
    printf '%s\n' "${KUBECONFIG:-}" >>"$state/kubeconfig.log"
    case $args in
      *"get daemonset kube-proxy"*) echo 'Error from server (NotFound): daemonsets.apps "kube-proxy" not found' >&2 && exit 1 ;;
      *"get nodes -o jsonpath={.items[*].metadata.name}"*) echo "${nodes[*]}" ;;
      *"get nodes -o jsonpath={range"*) printf '%s 172.18.0.%s\n' "${nodes[0]}" 2 "${nodes[1]}" 3 "${nodes[2]}" 4 ;;
      *"get pods -l app=echo"*) printf '%s\n' "${pods[@]}" ;;
      *"get service echo -o"*) printf '10.96.12.34' ;;
      *"get service echo-nodeport -o"*) printf '30080' ;;
      *"exec client -- "*) while [[ $1 != -- ]]; do shift; done && shift && exec "$@" ;;
      *"get pods -o name"*) printf 'pod/coredns-1\npod/kpx-abcde\npod/kpx-fghij\n' ;;
      *"get nodeproxystatuses -o yaml"*) echo "kind: List" ;;
      *"get nodeproxystatuses -o wide"*) echo "NAME READY VERIFIED" ;;
      *" logs "*) echo "kpx log line" ;;
      *) ;;
    esac
    ;;
  helm) ;;
  *)
    echo "fake-tool: unknown tool name $tool" >&2
    exit 3
    ;;
esac
