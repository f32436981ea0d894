# kpx developer entry points. Every target runs through npm so the project's Node 24 is used.
.PHONY: all install preview test test-unit test-kernel lint typecheck bench clean

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

clean:
	rm -rf node_modules dist coverage
