# Entry points for development and CI. `make` alone lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Spec globs on the command line (as in package.json), not in .mocharc.json, so that
# `npx mocha test/e2e/one.test.ts` runs just that file.
TESTS := 'test/{unit,integration,e2e}/**/*.test.ts'
UNIT_TESTS := 'test/unit/**/*.test.ts'
# `scripts/services.sh up`, then the command with the services it settled on (PUSH_NATS_URL: a
# private current nats-server when the configured one is older than 2.11; PUSH_NATS_SERVER_BIN),
# then `down` for what this run started, and only that, also on failure and Ctrl-C.
WITH_SERVICES := scripts/with-services.sh
# The benchmark harness at tiny sizes takes minutes: CI runs it once (`make bench-smoke`), not
# every local `make test`.
SMOKE_TEST := test/e2e/bench-smoke.test.ts
# The failover suite (a private 3-node cluster losing nodes under load) takes minutes: its own
# target, which CI runs after `make test`; `make test` does not.
FAULT_TESTS := 'test/faults/**/*.test.ts'

.PHONY: help deps dev build typecheck test test-unit test-faults bench-smoke lint bench stop clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-11s %s\n", $$1, $$2 }'

dev: ## build, start services and the four apps with a demo app (Ctrl-C stops)
	scripts/dev.sh

# Dependencies, installed on first use (a fresh clone) and again when the lock file changes.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

deps: node_modules/.package-lock.json ## install dependencies (npm ci) if missing or stale

build: deps ## compile every package (tsc -b) into its dist/, the SDK's browser bundle and its npm tarball, the web console
	npx tsc -b tsconfig.json
	node libs/client/bundle.mjs
	node libs/client/pack.mjs
	node apps/center/console/bundle.mjs

# mocha runs the tests through tsx, which strips types without checking them: test/ and bench/
# are type-checked here or nowhere.
typecheck: build ## type-check every project: the packages, test/ and bench/
	npx tsc -p test/tsconfig.json
	npx tsc -p bench/tsconfig.json
	npx tsc -p demo/tsconfig.json
	npx tsc -p apps/center/console/tsconfig.json

# A failed type-check or lint still ends with the summary line CI reads (the tests did not run).
test: deps ## type-check, lint, make sure NATS/Redis/Postgres answer, run every test suite but the bench smoke
	@$(MAKE) --no-print-directory typecheck lint || { echo; echo '0 passed, 1 failed'; exit 1; }
	$(WITH_SERVICES) npx mocha --ignore $(SMOKE_TEST) $(TESTS)

test-unit: build ## unit tests only (no services)
	npx mocha $(UNIT_TESTS)

test-faults: build ## the failover suite: a 3-node JetStream cluster killed, lame-ducked and restarted under load (minutes; CI runs it)
	$(WITH_SERVICES) npx mocha $(FAULT_TESTS)

bench-smoke: build ## the benchmark harness at tiny sizes, so it never rots (minutes; CI runs it)
	$(WITH_SERVICES) npx mocha $(SMOKE_TEST)

lint: deps ## eslint (type-checked rules) and prettier --check
	npx eslint . && npx prettier --check .

bench: build ## make sure NATS/Redis/Postgres answer, run the benchmarks under bench/
	$(WITH_SERVICES) npx tsx bench/run.ts

stop: ## stop what `make dev` started (apps, then private services)
	scripts/stop.sh

clean: ## remove build output (dist/ and .tsbuildinfo)
	rm -rf apps/*/dist libs/*/dist
	find . -name node_modules -prune -o -name '*.tsbuildinfo' -type f -print -exec rm -f {} +
