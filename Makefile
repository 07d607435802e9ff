# Entry points for development and CI. `make` alone lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Spec globs on the command line (as in package.json), not in .mocharc.json, so that
# `npx mocha test/e2e/one.test.ts` runs just that file.
TESTS := 'test/{unit,integration,e2e}/**/*.test.ts'
UNIT_TESTS := 'test/unit/**/*.test.ts'
# The services `scripts/services.sh up` settled on (PUSH_NATS_URL: a private current nats-server
# when the configured one is older than 2.11; PUSH_NATS_SERVER_BIN), exported to the command after it.
WITH_SERVICES := set -a && . .data/services.env && set +a &&

.PHONY: help deps dev build test test-unit lint bench stop clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-10s %s\n", $$1, $$2 }'

dev: ## build, start services and the four apps with a demo app (Ctrl-C stops)
	scripts/dev.sh

# Dependencies, installed on first use (a fresh clone) and again when the lock file changes.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

deps: node_modules/.package-lock.json ## install dependencies (npm ci) if missing or stale

build: deps ## compile every package (tsc -b) into its dist/
	npx tsc -b tsconfig.json

test: build ## build, make sure NATS/Redis/Postgres answer, run every test suite
	scripts/services.sh up
	$(WITH_SERVICES) npx mocha $(TESTS)

test-unit: build ## unit tests only (no services)
	npx mocha $(UNIT_TESTS)

lint: deps ## eslint and prettier --check
	npx eslint . && npx prettier --check .

bench: build ## make sure NATS/Redis/Postgres answer, run the benchmarks under bench/
	scripts/services.sh up
	$(WITH_SERVICES) npx tsx bench/run.ts

stop: ## stop what `make dev` started (apps, then private services)
	scripts/stop.sh

clean: ## remove build output (dist/ and .tsbuildinfo)
	rm -rf apps/*/dist libs/*/dist
	find . -name node_modules -prune -o -name '*.tsbuildinfo' -type f -print -exec rm -f {} +
