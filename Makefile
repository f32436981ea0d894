# kpx developer entry points. Every target runs through npm so the project's Node 24 is used.
.PHONY: all install preview test test-unit test-kernel lint typecheck bench clean binaries cluster-up cluster-down e2e e2e-kind

all: test

node_modules: package.json package-lock.json
	npm ci
	@touch node_modules

install: node_modules

## preview: compile the embedded example cluster and print the rules (no cluster needed)
preview: node_modules
	npm run --silent preview

## test: typecheck, lint, unit tests and kernel tests (kernel tests need root and iptables)
test: node_modules
	npm test

test-unit: node_modules
	npm run test:unit

test-kernel: node_modules
	npm run test:kernel

lint: node_modules
	npm run lint

typecheck: node_modules
	npm run typecheck

bench: node_modules
	npm run bench

## binaries: build (once, cached in ~/.cache/kpx) kube-apiserver, kube-controller-manager,
## kube-proxy, kubectl, etcd and helm from the Go module proxy
binaries:
	bash e2e/build/build-binaries.sh

## cluster-up / cluster-down: a real control plane and netns nodes on this machine (root)
cluster-up: node_modules binaries
	npx node e2e/cluster/up.ts $(ARGS)

cluster-down: node_modules
	npx node e2e/cluster/down.ts

## e2e: the real-cluster tests (root, Go, network namespaces); see docs/e2e.md
e2e: node_modules binaries
	npx vitest run --config e2e/cluster/vitest.config.ts

## e2e-kind: build the image, install the chart in a kind cluster without kube-proxy, check ClusterIP,
## NodePort and balancing (needs Docker, kind, kubectl and helm; stops with exit 2 naming what is
## missing; see docs/e2e.md, "kind")
e2e-kind:
	bash e2e/kind/run.sh

clean:
	rm -rf node_modules dist coverage
