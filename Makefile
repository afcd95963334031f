# wsedge — see README.md. Every target works on a fresh machine with Go;
# `make test` installs Redis and PostgreSQL (Debian packages) when run as root,
# or stops at once with the command to run.
GO      ?= go
PKGS    ?= ./...
TIMEOUT ?= 20m

.PHONY: run build test test-go test-ops test-k8s test-operator operator-generate k8s-tools image deps lint vet fmt-check staticcheck fuzz bench clean

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
	sc=$$($(GO) tool -n staticcheck) && cd operator && $(GO) vet ./... && $$sc ./... && $(GO) test -count=1 -timeout $(TIMEOUT) ./...

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

deps:
	@bash .ci/deps

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

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

## bench: connection-scale benchmarks; see bench/README.md and docs/BENCHMARKS.md.
BENCH_OUT ?= bench/results/full
bench: build
	bin/wsedge-bench -server-cmd bin/wsedge -json $(BENCH_OUT).json -md $(BENCH_OUT).md

clean:
	rm -rf bin bench/out
