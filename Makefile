# mageflow — the two commands on a fresh Debian machine:
#   make run    the embedded default: Temporal dev server + worker + HTTP server + demo build
#   make test   everything the suite needs, then the whole suite (unit, integration, lint)
# Everything installed goes to ./bin (Go tools) or comes from Debian packages.

SHELL        := /bin/bash
GO           ?= go
BIN          := $(CURDIR)/bin
VAR          := $(CURDIR)/var
TEMPORAL_VERSION      := v1.5.1
STATICCHECK_VERSION   := v0.8.2
WORKFLOWCHECK_VERSION := v0.6.0
BUILDER_IMAGE         ?= mageflow/builder:bookworm
INSTANCE_IMAGE        ?= mageflow/instance:bookworm
# Debian packages the tests and the demo use: git (reference for build numbers),
# zstd/tar/gzip (artifact checks and the packaging baseline), debootstrap (builder
# image), php-cli + composer (the local builder), docker-compose (compose file check),
# time (peak memory in benchmarks), nginx-light + php8.2-fpm (hosts in dev and tests), chromium (dashboard test),
# mariadb-server (M1 audit database checks: mariadbd on a temp socket), openssh-server (sshd -T/-t checks),
# php8.2-mysql (the weak M1 store fixture reads its injected scripts from MariaDB).
DEB_PACKAGES := git zstd tar gzip debootstrap ca-certificates php-cli php-xml php-mbstring composer docker-compose time nginx-light php8.2-fpm chromium mariadb-server openssh-server php8.2-mysql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
GOFLAGS_TEST ?= -race -count=1
export TEMPORAL_CLI := $(BIN)/temporal
# The agent bind-mounted into docker fleet instances (static: the instance
# image has no Go toolchain nor this machine's libc).
export MAGEFLOW_AGENT_BIN := $(BIN)/mageflow-worker-static

.PHONY: sshd-privsep record-histories demo-push run run-fleet test build deps builder-image fleet-image lint unit bench fuzz clean help compose-config image

help:
	@echo "make run          start Temporal dev server, worker, HTTP server and the demo (Ctrl-C stops)"
	@echo "make run-fleet    make run plus a docker group of 2 (+1 warm) behind nginx: scale-out and image refresh"
	@echo "make test         install what the tests need and run the whole suite"
	@echo "make bench        run the benchmarks and print their figures"
	@echo "make build        build bin/mageflow and bin/mageflow-worker"
	@echo "make builder-image build $(BUILDER_IMAGE) from Debian packages"

run: deps $(BIN)/temporal builder-image build
	$(BIN)/mageflow dev --temporal-cli $(BIN)/temporal

# The same plus the docker fleet demo: a group of 2 instances and a warm pool
# of 1 behind a local nginx (mageflow.fleet.yaml); shows a scale-out through
# ScaleOutReadiness and a WarmPoolImageRefresh, printing Web UI links.
run-fleet: deps $(BIN)/temporal builder-image fleet-image build
	$(BIN)/mageflow dev --config mageflow.fleet.yaml --temporal-cli $(BIN)/temporal --fleet

# With `make run` running: push one more demo commit; it builds and deploys
# to staging with zero downtime.
demo-push: build
	$(BIN)/mageflow demo

build: $(BIN)/mageflow $(BIN)/mageflow-worker $(BIN)/mageflow-worker-static

$(BIN)/mageflow: FORCE
	$(GO) build -o $@ ./starter
$(BIN)/mageflow-worker: FORCE
	$(GO) build -o $@ ./worker
$(BIN)/mageflow-worker-static: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./worker
FORCE:

# Debian packages, installed only when one is missing.
deps: $(VAR)/.deps-$(shell echo $(DEB_PACKAGES) | md5sum | cut -c1-8)
$(VAR)/.deps-%:
	@mkdir -p $(VAR)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing \
	    || { echo "could not install $$missing: run as root or with sudo on a Debian machine"; exit 1; }; \
	fi
	@docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable: install docker.io and start it (systemctl start docker), or set build.builder: local"; exit 1; }
	@touch $@

# The Temporal CLI with the dev server and Web UI built in. Newer CLIs cannot be
# installed with go install (their go.mod has a replace directive).
$(BIN)/temporal:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_VERSION)
$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
$(BIN)/workflowcheck:
	GOBIN=$(BIN) $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)

# The builder image, from Debian packages (no registry can be pulled from).
# Idempotent: the script skips the build when the image matches its recipe.
builder-image: deps
	internal/builder/image/build.sh $(BUILDER_IMAGE)

# The docker fleet's instance image (php-fpm + nginx from Debian packages;
# the agent is mounted, so code changes need no rebuild). Idempotent.
fleet-image: deps
	internal/fleet/docker/image/build.sh $(INSTANCE_IMAGE)

lint: $(BIN)/staticcheck $(BIN)/workflowcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed on:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	$(BIN)/workflowcheck -show-pos ./...

test: deps sshd-privsep $(BIN)/temporal builder-image fleet-image $(BIN)/mageflow-worker-static lint
	$(GO) test $(GOFLAGS_TEST) -timeout 20m ./...

# Re-record the workflow histories the replay tests replay, after changing a
# workflow on purpose (with a new GetVersion branch).
record-histories: $(BIN)/temporal
	MAGEFLOW_RECORD_HISTORY=1 $(GO) test -count=1 -run 'TestRecordAutoDeploySkip' ./workflows/
	MAGEFLOW_RECORD_HISTORY=1 $(GO) test -count=1 -run 'TestRecordHistories' ./workflows/
	MAGEFLOW_RECORD_HISTORY=1 $(GO) test -count=1 -run 'TestLocalBuildEndToEnd' ./test/

# sshd -T (the M1 audit's ssh checks) refuses to run without its privilege
# separation directory, which only the (never started) service creates; /run
# is emptied at boot, so this is checked on every run, not stamped.
sshd-privsep:
	@[ -d /run/sshd ] || $(SUDO) mkdir -p -m 0755 /run/sshd

compose-config:
	docker-compose -f docker-compose.yml config -q

# Benchmarks print figures with a baseline from the same run (git rev-list,
# tar -czf, /healthz). Generated data is cached under var/bench.
bench: deps fleet-image $(BIN)/mageflow-worker-static
	$(GO) run ./internal/gitmeta/cmd/bench-buildnumber -commits 100000 -dir $(VAR)/bench
	$(GO) run ./internal/artifact/cmd/bench-package
	$(GO) run ./internal/server/cmd/bench-webhook
	$(GO) test ./internal/server -run '^$$' -bench BenchmarkHook -benchmem
	$(GO) run ./test/benchdeploy
	$(GO) run ./test/benchfleet
	$(GO) test ./internal/m1audit -run '^$$' -bench 'Audit|ScanFiles' -benchtime 3x

FUZZTIME ?= 30s
fuzz:
	for f in FuzzParseGitHub FuzzParseGitLab FuzzParseBitbucket FuzzVerifyGitHub FuzzVerifyGitLab FuzzMatchRepo; do \
	  $(GO) test ./internal/webhook -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || exit 1; done
	$(GO) test ./internal/server -run '^$$' -fuzz '^FuzzHookGitHub$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/artifact -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(FUZZTIME)

clean:
	rm -rf $(BIN) $(VAR)/work

# The mageflow image (FROM scratch + static binaries), used by docker-compose.yml.
image:
	@mkdir -p $(VAR)/image
	CGO_ENABLED=0 $(GO) build -trimpath -o $(VAR)/image/mageflow ./starter
	CGO_ENABLED=0 $(GO) build -trimpath -o $(VAR)/image/mageflow-worker ./worker
	cp /etc/ssl/certs/ca-certificates.crt $(VAR)/image/
	docker build -q -t mageflow/mageflow:dev -f docs/compose/Dockerfile .
