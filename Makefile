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
# The Temporal cluster `make run-cluster` runs: v1.29.1 is the server the CLI
# v1.5.1 dev server embeds (newer ones need a newer Go or a refused module);
# v2.55.0 is the newest Web UI that builds here.
TEMPORAL_SERVER_VERSION := v1.29.1
TEMPORAL_UI_VERSION     := v2.55.0
BUILDER_IMAGE         ?= mageflow/builder:bookworm
INSTANCE_IMAGE        ?= mageflow/instance:bookworm
# Debian packages `make run` needs (the demo as mageflow.yaml configures it):
# git (go build stamps the VCS revision), tar/gzip/ca-certificates, debootstrap
# (builder image; the demo builds with docker), php-cli + php-xml (the local
# host runs the fixture's bin/magento, which reads module.xml), nginx-light +
# php8.2-fpm (the local host `mageflow dev` serves).
RUN_PACKAGES  := git tar gzip ca-certificates debootstrap php-cli php-xml nginx-light php8.2-fpm
# What only the tests and benchmarks add: zstd (artifact checks), php-mbstring +
# composer (the local builder), docker-compose (compose file check), time (peak
# memory in benchmarks), chromium (dashboard test), mariadb-server (M1 audit
# database checks: mariadbd on a temp socket), openssh-server (sshd -T/-t
# checks), php8.2-mysql (the weak M1 store fixture reads its injected scripts
# from MariaDB).
# What only the cluster targets add: PostgreSQL 15 (Temporal's persistence).
CLUSTER_PACKAGES := postgresql-15
TEST_PACKAGES := zstd php-mbstring composer docker-compose time chromium mariadb-server openssh-server php8.2-mysql
DEB_PACKAGES  := $(RUN_PACKAGES) $(TEST_PACKAGES)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
GOFLAGS_TEST ?= -race -count=1
export TEMPORAL_CLI := $(BIN)/temporal
# The agent bind-mounted into docker fleet instances (static: the instance
# image has no Go toolchain nor this machine's libc).
export MAGEFLOW_AGENT_BIN := $(BIN)/mageflow-agent

.PHONY: run-cluster test-cluster deps-cluster sshd-privsep record-histories demo-push run run-fleet test build deps deps-run deps-test builder-image fleet-image lint unit bench fuzz clean help compose-config image cluster-images test-compose

help:
	@echo "make run          start Temporal dev server, worker, HTTP server and the demo (Ctrl-C stops)"
	@echo "make run-fleet    make run plus a docker group of 2 (+1 warm) behind nginx: scale-out and image refresh"
	@echo "make run-cluster  make run on a real Temporal cluster (PostgreSQL, separate services, Web UI)"
	@echo "make test         install what the tests need and run the whole suite"
	@echo "make test-cluster the integration and end-to-end suites against that cluster"
	@echo "make bench        run the benchmarks and print their figures"
	@echo "make build        build bin/mageflow, bin/mageflow-worker and bin/mageflow-agent"
	@echo "make builder-image build $(BUILDER_IMAGE) from Debian packages"
	@echo "make cluster-images build the images docker-compose.yml runs (PostgreSQL, Temporal, UI, mageflow)"
	@echo "make test-compose start docker-compose.yml, build and deploy through it, tear it down"

# The first-time steps run in parallel (-j3: the Temporal CLI build, the
# builder image and bin/mageflow), each logged to var/log/<step>.log with one
# line saying how long it took. mageflow dev runs the worker in-process: the
# worker binaries are not built here.
run: deps-run
	@$(MAKE) --no-print-directory -j3 $(BIN)/temporal builder-image $(BIN)/mageflow
	$(BIN)/mageflow dev --temporal-cli $(BIN)/temporal

# The same plus the docker fleet demo: a group of 2 instances and a warm pool
# of 1 behind a local nginx (mageflow.fleet.yaml); shows a scale-out through
# ScaleOutReadiness and a WarmPoolImageRefresh, printing Web UI links. The
# instances mount bin/mageflow-agent as their agent.
run-fleet: deps-run
	@$(MAKE) --no-print-directory -j3 $(BIN)/temporal builder-image fleet-image $(BIN)/mageflow $(BIN)/mageflow-agent
	$(BIN)/mageflow dev --config mageflow.fleet.yaml --temporal-cli $(BIN)/temporal --fleet

# The same demo on a real Temporal cluster (mageflow cluster): PostgreSQL 15
# under var/cluster/pg, the frontend, history, matching and worker services
# as separate processes, the standalone Web UI on :8233, two control-worker
# processes, the local host's agent and `mageflow serve`; logs in
# var/cluster/log (docs/operations.md, "A real Temporal cluster"). The
# Temporal binaries are built once into ./bin; a second run reuses them and
# the data.
CLUSTER_BINS := $(BIN)/temporal-server $(BIN)/temporal-sql-tool $(BIN)/temporal-ui-server $(BIN)/weed
run-cluster: deps-run deps-cluster
	@$(MAKE) --no-print-directory -j3 $(CLUSTER_BINS) builder-image $(BIN)/mageflow $(BIN)/mageflow-worker $(BIN)/mageflow-agent
	$(BIN)/mageflow cluster --bin $(BIN) --worker-bin $(BIN)/mageflow-worker --agent-bin $(BIN)/mageflow-agent

# The integration and end-to-end suites (./test/... and ./workflows) on a
# cluster of their own (var/cluster-test, other ports than run-cluster's),
# shared by both packages, in a fresh namespace per run; the tests find it
# through MAGEFLOW_TEST_TEMPORAL and MAGEFLOW_TEST_NAMESPACE (never
# TEMPORAL_ADDRESS, which the client reads).
TEST_CLUSTER_DIR := $(VAR)/cluster-test
test-cluster: deps-run deps-test deps-cluster sshd-privsep builder-image fleet-image
	@$(MAKE) --no-print-directory -j3 $(CLUSTER_BINS) $(BIN)/temporal $(BIN)/mageflow $(BIN)/mageflow-agent
	@set -euo pipefail; ns=it-$$(date +%Y%m%d-%H%M%S); ready=$(TEST_CLUSTER_DIR)/ready; rm -f $$ready; mkdir -p $(TEST_CLUSTER_DIR)/log; \
	$(BIN)/mageflow cluster --temporal-only --dir $(TEST_CLUSTER_DIR) --bin $(BIN) --pg-port 5434 --temporal-port 7333 \
	  --metrics-port 8011 --ui-port 8333 --namespace $$ns --ready-file $$ready >$(TEST_CLUSTER_DIR)/log/supervisor.log 2>&1 & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid' EXIT; start=$$(date +%s); \
	until [ -s $$ready ]; do kill -0 $$pid 2>/dev/null || { tail -n 40 $(TEST_CLUSTER_DIR)/log/supervisor.log; exit 1; }; sleep 0.5; done; \
	echo "test cluster ready in $$(( $$(date +%s)-start ))s: $$(cat $$ready), namespace $$ns (logs: $(TEST_CLUSTER_DIR)/log)"; \
	MAGEFLOW_TEST_TEMPORAL=$$(cat $$ready) MAGEFLOW_TEST_NAMESPACE=$$ns MAGEFLOW_TEST_CLUSTER_DIR=$(TEST_CLUSTER_DIR) $(GO) test $(GOFLAGS_TEST) -timeout 30m ./test/... ./workflows
	MAGEFLOW_TEST_WEED=$(BIN)/weed $(GO) test $(GOFLAGS_TEST) -timeout 10m -run 'S3' ./internal/build/store ./internal/front/cluster

# With `make run` running: push one more demo commit; it builds and deploys
# to staging with zero downtime.
demo-push: build
	$(BIN)/mageflow demo

build: $(BIN)/mageflow $(BIN)/mageflow-worker $(BIN)/mageflow-agent

# $(call step,NAME,COMMAND): runs COMMAND with its output in var/log/NAME.log
# and prints one line: how long it took; "up to date" when it changed nothing
# (its log says so, or the target file came out byte-identical); or, when it
# failed, the end of its log.
step = @mkdir -p $(VAR)/log $(BIN); log=$(VAR)/log/$(1).log; before=$$(cksum $@ 2>/dev/null); start=$$(date +%s); \
	if ! { $(2); } >$$log 2>&1; then echo "$(1): FAILED after $$(( $$(date +%s)-start ))s; the end of var/log/$(1).log:"; tail -n 40 $$log; exit 1; fi; \
	secs=$$(( $$(date +%s)-start )); \
	if grep -q 'is up to date' $$log || { [ -n "$$before" ] && [ "$$before" = "$$(cksum $@ 2>/dev/null)" ]; }; \
	then echo "$(1): up to date ($${secs}s)"; else echo "$(1): $${secs}s (log: var/log/$(1).log)"; fi

$(BIN)/mageflow: FORCE
	$(call step,mageflow,$(GO) build -o $@ ./starter)
$(BIN)/mageflow-worker: FORCE
	$(call step,mageflow-worker,$(GO) build -o $@ ./worker)
$(BIN)/mageflow-agent: FORCE
	$(call step,mageflow-agent,CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $@ ./worker/agent)
FORCE:

# Debian packages, installed only when one is missing: deps-run for `make run`,
# deps-test for what only the tests add (after deps-run: one apt at a time).
pkghash = $(shell echo $(1) | md5sum | cut -c1-8)
DEPS_RUN  := $(VAR)/.deps-run-$(call pkghash,$(RUN_PACKAGES))
DEPS_TEST := $(VAR)/.deps-test-$(call pkghash,$(TEST_PACKAGES))
DEPS_CLUSTER := $(VAR)/.deps-cluster-$(call pkghash,$(CLUSTER_PACKAGES))
deps: deps-run deps-test
deps-run: $(DEPS_RUN)
deps-test: $(DEPS_TEST)
deps-cluster: $(DEPS_CLUSTER)
$(DEPS_RUN): PACKAGES := $(RUN_PACKAGES)
$(DEPS_TEST): PACKAGES := $(TEST_PACKAGES)
$(DEPS_CLUSTER): PACKAGES := $(CLUSTER_PACKAGES)
$(DEPS_TEST): | $(DEPS_RUN)
$(DEPS_CLUSTER): | $(DEPS_RUN) $(DEPS_TEST)
$(DEPS_RUN) $(DEPS_TEST) $(DEPS_CLUSTER):
	@mkdir -p $(VAR)
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; start=$$(date +%s); \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing \
	    || { echo "could not install $$missing: run as root or with sudo on a Debian machine"; exit 1; }; \
	  echo "Debian packages: $$(( $$(date +%s)-start ))s"; \
	fi
	@docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable: install docker.io and start it (systemctl start docker), or set build.builder: local"; exit 1; }
	@touch $@

# The Temporal CLI with the dev server and Web UI built in. Newer CLIs cannot be
# installed with go install (their go.mod has a replace directive).
$(BIN)/temporal:
	$(call step,temporal,$(call goinstall,github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_VERSION),temporal))
# The Temporal cluster's binaries (make run-cluster, make test-cluster).
# $(call goinstall,PKG@VERSION,NAME): go install into a temporary GOBIN (two
# of them are called "server"), then rename to the target. Static (no cgo,
# trimmed): docker-compose.yml's images copy them FROM scratch.
goinstall = d=$$(mktemp -d) && CGO_ENABLED=0 GOBIN=$$d $(GO) install -trimpath -ldflags='-s -w' $(1) && mkdir -p $(@D) && mv $$d/$(2) $@ && rmdir $$d
$(BIN)/temporal-server:
	$(call step,temporal-server,$(call goinstall,go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION),server))
$(BIN)/temporal-sql-tool:
	$(call step,temporal-sql-tool,$(call goinstall,go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION),sql))
$(BIN)/temporal-ui-server:
	$(call step,temporal-ui-server,$(call goinstall,github.com/temporalio/ui-server/v2/cmd/server@$(TEMPORAL_UI_VERSION),server))
# SeaweedFS's weed: the S3 server `mageflow cluster` keeps artifacts in and
# the S3 store's tests run against (make test-cluster). `go install
# pkg@version` refuses it (its go.mod has a replace directive), so it is
# built inside the module the proxy serves, as the main module.
WEED_VERSION := v0.0.0-20261109003541-7506e5f91cd6
$(BIN)/weed:
	$(call step,weed,t=$$(mktemp -d) && m=$$(cd $$t && $(GO) mod download -json github.com/seaweedfs/seaweedfs@$(WEED_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p') && rmdir $$t && cd $$m && $(GO) build -trimpath -o $@.tmp ./weed && mv $@.tmp $@)
$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
$(BIN)/workflowcheck:
	GOBIN=$(BIN) $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)

# The builder image, from Debian packages (no registry can be pulled from).
# Idempotent: the script skips the build when the image matches its recipe.
builder-image: deps-run
	$(call step,builder-image,internal/build/builder/image/build.sh $(BUILDER_IMAGE))

# The docker fleet's instance image (php-fpm + nginx from Debian packages;
# the agent is mounted, so code changes need no rebuild). Idempotent.
fleet-image: deps-run
	$(call step,instance-image,internal/fleet/docker/image/build.sh $(INSTANCE_IMAGE))

lint: $(BIN)/staticcheck $(BIN)/workflowcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed on:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	$(BIN)/workflowcheck -show-pos ./...

test: deps-run deps-test sshd-privsep $(BIN)/temporal builder-image fleet-image $(BIN)/mageflow-agent lint
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
	MAGEFLOW_CODEC_KEY=x POSTGRES_PASSWORD=x docker-compose -f docker-compose.yml config -q

# Benchmarks print figures with a baseline from the same run (git rev-list,
# tar -czf, /healthz). Generated data is cached under var/bench.
bench: deps fleet-image $(BIN)/mageflow-agent
	$(GO) run ./test/benchbuildnumber -commits 100000 -dir $(VAR)/bench
	$(GO) run ./test/benchpackage
	$(GO) run ./test/benchdelta
	$(GO) run ./test/benchwebhook
	$(GO) test ./internal/front/server -run '^$$' -bench BenchmarkHook -benchmem
	$(GO) run ./test/benchdeploy
	$(GO) run ./test/benchfleet
	@$(MAKE) --no-print-directory deps-cluster $(CLUSTER_BINS) $(BIN)/temporal $(BIN)/mageflow && $(GO) run ./test/benchscale
	$(GO) test ./internal/m1/m1audit -run '^$$' -bench 'Audit|ScanFiles' -benchtime 3x

FUZZTIME ?= 30s
fuzz:
	for f in FuzzParseGitHub FuzzParseGitLab FuzzParseBitbucket FuzzVerifyGitHub FuzzVerifyGitLab FuzzMatchRepo; do \
	  $(GO) test ./internal/platform/webhook -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || exit 1; done
	$(GO) test ./internal/front/server -run '^$$' -fuzz '^FuzzHookGitHub$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/build/artifact -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(FUZZTIME)

clean:
	rm -rf $(BIN) $(VAR)/work

# The mageflow image (FROM scratch + static binaries + busybox for the
# healthchecks), used by docker-compose.yml.
image:
	@mkdir -p $(VAR)/image/tmp && chmod 1777 $(VAR)/image/tmp
	CGO_ENABLED=0 $(GO) build -trimpath -o $(VAR)/image/mageflow ./starter
	CGO_ENABLED=0 $(GO) build -trimpath -o $(VAR)/image/mageflow-worker ./worker
	cp /etc/ssl/certs/ca-certificates.crt $(VAR)/image/
	docs/compose/scratch-image.sh busybox $(VAR)/image/busybox
	docker build -q -t mageflow/mageflow:dev -f docs/compose/Dockerfile .

# The images docker-compose.yml runs, all built here (no registry): PostgreSQL
# 15 from Debian packages (debootstrap + docker import), Temporal v1.29.1
# (server, sql-tool, CLI) and the Web UI v2.55.0 FROM scratch with the very
# binaries in bin/ (built without cgo, so the same files run on the host, in
# make test-cluster, and FROM scratch: one build each), and the mageflow
# image. Each
# script skips an image whose recipe and inputs are unchanged.
COMPOSE_SERVER := $(BIN)/temporal-server
COMPOSE_SQL    := $(BIN)/temporal-sql-tool
COMPOSE_CLI    := $(BIN)/temporal
COMPOSE_UI     := $(BIN)/temporal-ui-server
cluster-images: deps-run $(COMPOSE_SERVER) $(COMPOSE_SQL) $(COMPOSE_CLI) $(COMPOSE_UI)
	@for b in $(COMPOSE_SERVER) $(COMPOSE_SQL) $(COMPOSE_CLI) $(COMPOSE_UI); do \
	  $(GO) version -m $$b | grep -q 'CGO_ENABLED=0' || { echo "$$b was built with cgo (by an older Makefile) and cannot run FROM scratch: rm $$b and run make again"; exit 1; }; done
	$(call step,postgresql-image,docs/compose/postgresql-image.sh mageflow/postgresql:15-bookworm)
	$(call step,temporal-image,docs/compose/scratch-image.sh temporal mageflow/temporal:$(TEMPORAL_SERVER_VERSION) $(COMPOSE_SERVER) $(COMPOSE_SQL) $(COMPOSE_CLI))
	$(call step,temporal-ui-image,docs/compose/scratch-image.sh ui mageflow/temporal-ui:$(TEMPORAL_UI_VERSION) $(COMPOSE_UI))
	$(call step,mageflow-image,$(MAKE) --no-print-directory image)

# docker-compose.yml started for real (test/compose_test.go): up, healthy,
# one build and one deploy to its store host, down -v.
test-compose: cluster-images builder-image fleet-image build $(BIN)/temporal
	MAGEFLOW_TEST_COMPOSE=1 $(GO) test -count=1 -timeout 20m -run '^TestCompose$$' -v ./test
