# wsedge — see README.md. Every target works on a fresh machine with Go;
# `make test` installs Redis and PostgreSQL (Debian packages) when run as root,
# or stops at once with the command to run.
GO      ?= go
PKGS    ?= ./...
TIMEOUT ?= 20m

.PHONY: run build test test-go test-ops test-k8s test-operator operator-generate k8s-tools image image-operator deps lint vet fmt-check staticcheck tidy-check fuzz bench bench-bins bench-redis bench-chat bench-tokens bench-peers clean

# Build identity, linked into the binaries (wsedge version, wsedge_build_info);
# outside a git checkout they read "dev" and "unknown".
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/wsedge/wsedge/internal/version.version=$(VERSION) \
            -X github.com/wsedge/wsedge/internal/version.revision=$(REVISION)

## run: the server on :8000 with embedded defaults (in-memory broker, presence
## and history, local demo model). DEBUG=1 skips the Origin check for local use;
## CONSOLE=1 serves the browser console at http://127.0.0.1:8000/console/.
## The binary runs in place of the recipe's shell (not under `go run`, which
## exits 1 on Ctrl-C): Ctrl-C drains it and it exits 0, so make reports no
## error (make then ends by the signal, as any program stopped with Ctrl-C).
run:
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/wsedge ./cmd/wsedge
	DEBUG=$${DEBUG:-1} CONSOLE=$${CONSOLE:-1} LOG_FORMAT=$${LOG_FORMAT:-text} exec bin/wsedge

build:
	mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

## test: lint, then every test (real Redis, PostgreSQL and sockets) under -race,
## then the image and the Helm chart against a real Kubernetes control plane.
test: test-go test-k8s

test-go: deps lint
	$(GO) test -race -count=1 -timeout $(TIMEOUT) $(PKGS)
	$(MAKE) test-ops

## test-ops: test/ops (own module: PromQL parser, chromedp): the dashboard
## against a running server, the console and browser client in headless
## Chromium, the docs/PROTOCOL.md examples replayed, the examples/ clients.
test-ops:
	cd test/ops && $(GO) vet ./... && $(GO) tool -modfile=../../go.mod staticcheck ./... && $(GO) test -count=1 -timeout $(TIMEOUT) ./...

## k8s-tools: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
## kubectl, kwok and helm built from the Go module proxy into a cache outside
## the clone (minutes cold, seconds warm). .ci/run calls it before the tests.
k8s-tools:
	@bash hack/k8s-tools.sh

## test-k8s: the nested modules: the image builder (hack/image) and the chart
## (test/k8s: render + strict decode, helm lint, server dry-run, install on
## fake nodes). Runs after test-go so kube-apiserver is never linked beside
## `go test -race`.
# staticcheck is the root module's tool, run on the nested modules.
test-k8s: k8s-tools
	@set -e; sc=$$($(GO) tool -n staticcheck); for m in hack/image test/k8s/kubecluster test/k8s; do \
		echo "== $$m"; (cd $$m && $(GO) vet ./... && $$sc ./... && $(GO) test -count=1 -timeout $(TIMEOUT) ./...); \
	done
	$(MAKE) test-operator

## test-operator: the operator module (operator/): generated files up to date,
## vet, staticcheck, the decision core's tables, envtest (kube-apiserver +
## etcd) and the end-to-end test on fake nodes with real wsedge processes,
## which writes operator/test/results/e2e.{json,md}. Own module, no go.work:
## the root's `go test ./...` never starts a kube-apiserver.
test-operator: k8s-tools
	@$(MAKE) --no-print-directory operator-generate
	@git diff --exit-code --stat -- operator/api operator/config charts/wsedge/crds || \
		{ echo "generated operator files are stale: run make operator-generate and commit"; exit 1; }
	sc=$$($(GO) tool -n staticcheck) && cd operator && $(GO) vet ./... && $$sc ./... && $(GO) test -race -count=1 -timeout $(TIMEOUT) ./...

## operator-generate: deepcopy code, the CRD and the RBAC role from the API
## types and markers (controller-gen, pinned as a tool of operator/go.mod);
## the chart ships the same CRD.
operator-generate:
	cd operator && $(GO) tool controller-gen object paths=./api/... && \
		$(GO) tool controller-gen crd:crdVersions=v1 paths=./api/... output:crd:dir=config/crd/bases && \
		$(GO) tool controller-gen rbac:roleName=wsedge-operator paths=./internal/... output:rbac:dir=config/rbac
	cp operator/config/crd/bases/wsedge.io_wsedgescalers.yaml charts/wsedge/crds/

## image: bin/wsedge-oci (OCI layout) and bin/wsedge-image.tar (for `crane push`)
## of the static binary, built without Docker (hack/image, go-containerregistry).
CREATED  ?= $(shell git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
image:
	mkdir -p bin/image
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath \
		-ldflags '-s -w $(LDFLAGS)' \
		-o bin/image/wsedge ./cmd/wsedge
	cd hack/image && $(GO) run . -binary ../../bin/image/wsedge -version $(VERSION) -revision $(REVISION) \
		-created $(CREATED) -arch $(IMAGE_ARCH) -layout ../../bin/wsedge-oci -tarball ../../bin/wsedge-image.tar

## image-operator: bin/wsedge-operator-oci and bin/wsedge-operator-image.tar,
## the operator (operator/, its own module) on the same empty base; the
## chart's operator.image points at it.
image-operator:
	mkdir -p bin/image
	cd operator && CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath \
		-ldflags '-s -w' -o ../bin/image/wsedge-operator ./cmd
	cd hack/image && $(GO) run . -program wsedge-operator -binary ../../bin/image/wsedge-operator \
		-version $(VERSION) -revision $(REVISION) -created $(CREATED) -arch $(IMAGE_ARCH) \
		-layout ../../bin/wsedge-operator-oci -tarball ../../bin/wsedge-operator-image.tar

deps:
	@bash .ci/deps

lint: fmt-check vet staticcheck tidy-check

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

# go.mod and go.sum must be what `go mod tidy` writes (direct dependencies
# without "// indirect"); -diff prints the change instead of making it.
tidy-check:
	$(GO) mod tidy -diff

## fuzz: run every fuzz target for FUZZTIME each (seed corpora run in `make test`).
FUZZTIME ?= 30s
fuzz:
	@set -e; for t in \
		./edge/wsframe:FuzzParse ./edge/wsframe:FuzzAssemblerUTF8 \
		./edge:FuzzDecodeSessionMessage ./edge:FuzzHTTPHead \
		./edge/presence:FuzzDecodeMember ./edge/presence:FuzzAppendMembersJSON \
		./edge/broker:FuzzDecodeEnvelope \
		./chat:FuzzOnText ./chat:FuzzConversation ./chat/api:FuzzCSRFToken; do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$fn ($$pkg)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## Benchmarks (not part of `make test`): one program per suite under
## bench/cmd/, results in bench/results/; see bench/README.md and
## docs/BENCHMARKS.md. Each target builds what it runs into bin/.
BENCH_OUT ?= bench/results/full
bench-bins:
	mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/wsedge ./cmd/wsedge
	$(GO) build -o bin/ ./bench/cmd/...

## bench: the core server against the goroutine-per-connection baseline.
bench: bench-bins
	bin/wsedge-bench -server-cmd bin/wsedge -json $(BENCH_OUT).json -md $(BENCH_OUT).md

## bench-redis: 3 instances on a standalone Redis and on a Redis Cluster.
bench-redis: bench-bins
	bin/redis-bench -wsedge bin/wsedge -mode standalone -md bench/results/redis/standalone.md -json bench/results/redis/standalone.json
	bin/redis-bench -wsedge bin/wsedge -mode cluster -md bench/results/redis/cluster.md -json bench/results/redis/cluster.json

## bench-chat: 2,000 chat turns through the edge against the fake Bedrock: the upstream client modes, then
## the server's GC heap floor off and at its default, 4 alternating rounds, each run in a fresh process.
bench-chat: bench-bins
	ulimit -n 20000 && bin/chat-bench -edge -turns 2000 -rate 5 -tokens 30 -ramp 2s -compare h1,h1tls,h2std,h2 \
		-json bench/results/chat-upstream-2000x30.json -md bench/results/chat-upstream-2000x30.md
	ulimit -n 20000 && bin/chat-bench -edge -turns 2000 -rate 5 -tokens 30 -ramp 2s -upstream h2 -gc-floors 0,256 -rounds 4 \
		-json bench/results/chat-gcfloor-2000x30.json -md bench/results/chat-gcfloor-2000x30.md \
		-plot bench/results/chat-gcfloor-2000x30-ttft_cdf.svg

## bench-tokens: join tokens on vs off, alternating rounds.
bench-tokens: bench-bins
	bin/tokens-bench -rounds 5 -duration 3s -idle 500 -json bench/results/tokens.json

## bench-peers: wsedge, Centrifugo (memory engine) and the baseline, every
## core scenario in one run, then 3 instances each of wsedge and Centrifugo
## on one Redis. Centrifugo is built once from the Go module proxy into
## $(PEERS_CACHE) (outside the clone). QUICK=1: a smoke run under 2 minutes.
CENTRIFUGO_VERSION ?= v6.9.1
PEERS_CACHE ?= $(HOME)/.cache/wsedge-bench/centrifugo-$(CENTRIFUGO_VERSION)
PEERS_OUT ?= bench/results/peers
bench-peers: bench-bins
	@test -x $(PEERS_CACHE)/centrifugo || { mkdir -p $(PEERS_CACHE) && \
		cd $(PEERS_CACHE) && GOBIN=$(PEERS_CACHE) $(GO) install \
		-ldflags '-X github.com/centrifugal/centrifugo/v6/internal/build.Version=$(CENTRIFUGO_VERSION:v%=%)' \
		github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION); }
	bin/wsedge-bench -peers -server-cmd bin/wsedge -centrifugo-cmd $(PEERS_CACHE)/centrifugo \
		$(if $(QUICK),-quick -json $(PEERS_OUT)-quick.json -md $(PEERS_OUT)-quick.md,-json $(PEERS_OUT).json -md $(PEERS_OUT).md)

clean:
	rm -rf bin bench/out
