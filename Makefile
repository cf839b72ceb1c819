# azdo-keda-scaler. `make run` starts the demo; `make test` runs every test.
GO        ?= go
BIN       := bin/azdo-keda-scaler
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app.Version=$(VERSION) \
             -X github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app.Revision=$(REVISION)
# Empty: each target runs a fixed number of executions (about 10 s each on
# this machine). A duration (FUZZTIME=30s) can fail at its own deadline with
# "context deadline exceeded" and no failing input (go.dev/issue/75804,
# unfixed in Go 1.26): a count has no deadline to race.
FUZZTIME  ?=
IMAGE     ?= azdo-keda-scaler:$(VERSION)

.PHONY: all build run test lint unit fuzz ship screenshot manifests bench bench-micro e2e e2e-tools node-tools e2e-node image proto help

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build the binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/azdo-keda-scaler

RUN_GRPC  ?= 127.0.0.1:6000
RUN_HTTP  ?= 127.0.0.1:8080
run: build ## start the scaler against the embedded simulated organization (status page: http://127.0.0.1:8080/)
	./$(BIN) --demo --grpc-addr $(RUN_GRPC) --http-addr $(RUN_HTTP) --refresh-interval 2s --routing-warmup 4s \
	  --sweep-interval 5s --sweep-finished-for 10s

test: lint unit fuzz ship ## everything CI runs before the end-to-end tier

lint: ## gofmt and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-formatted: $$unformatted"; exit 1; fi
	$(GO) vet ./...

unit: ## unit and component tests, with the race detector
	$(GO) test -race -count=1 ./...

fuzz: ## each fuzz target for a fixed number of executions, or for FUZZTIME
	$(GO) test -run '^$$' -fuzz '^FuzzDemandEvaluation$$' -fuzztime $(or $(FUZZTIME),300000x) ./scaler/demands
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),200000x) ./scaler/trigger
	$(GO) test -run '^$$' -fuzz '^FuzzGetMetrics$$' -fuzztime $(or $(FUZZTIME),10000x) ./scaler/service

ship: ## what we ship: charts (Helm SDK), deploy/ drift, Dockerfiles, start.sh, the status page, the release workflow (needs bash, curl, shellcheck, chromium)
	shellcheck deploy/agent/start.sh deploy/agent/fetch-agent.sh .ci/run
	cd test && $(GO) vet ./... && $(GO) test -race -count=1 ./charts ./dockerfiles ./agent ./statuspage ./auth ./kedarules
	cd test/release && $(GO) vet ./... && $(GO) test -count=1 ./...

screenshot: ## the status page in headless Chromium against make run: rewrites docs/status-page.png
	cd test && $(GO) test -count=1 ./statuspage -update

manifests: ## regenerate deploy/ from the charts
	cd test && $(GO) test -count=1 -run TestManifestsUpToDate ./charts -update

bench: build ## side by side with KEDA's built-in scaler: writes docs/benchmarks.md and docs/benchmarks-requests.png
	cd test/bench && $(GO) run . -out ../../docs -scaler-bin ../../$(BIN)

bench-micro: ## micro-benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./scaler/pools ./scaler/service

# The end-to-end tier: etcd, kube-apiserver and the KEDA operator built from the Go
# modules pinned in test/e2e/tools (rebuilt only when those pins change).
E2E_BIN := test/e2e/.work/bin
KUBE_LDFLAGS := -X k8s.io/component-base/version.gitVersion=v1.34.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34

$(E2E_BIN)/etcd: test/e2e/tools/etcd/go.mod test/e2e/tools/etcd/go.sum
	cd test/e2e/tools/etcd && $(GO) build -trimpath -o $(CURDIR)/$@ go.etcd.io/etcd/server/v3

$(E2E_BIN)/kube-apiserver: test/e2e/tools/kube-apiserver/go.mod test/e2e/tools/kube-apiserver/go.sum
	cd test/e2e/tools/kube-apiserver && $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(CURDIR)/$@ k8s.io/kubernetes/cmd/kube-apiserver

$(E2E_BIN)/keda-operator: test/e2e/tools/keda-operator/go.mod test/e2e/tools/keda-operator/go.sum
	cd test/e2e/tools/keda-operator && $(GO) build -trimpath -o $(CURDIR)/$@ github.com/kedacore/keda/v2/cmd/operator

e2e-tools: $(E2E_BIN)/etcd $(E2E_BIN)/kube-apiserver $(E2E_BIN)/keda-operator ## build the end-to-end tier's etcd, kube-apiserver and KEDA

# The node tier's controller manager, scheduler and kubelet: the same k8s.io/kubernetes.
NODE_TOOLS := kube-controller-manager kube-scheduler kubelet
$(addprefix $(E2E_BIN)/,$(NODE_TOOLS)): test/e2e/tools/kube-node/go.mod test/e2e/tools/kube-node/go.sum
	cd test/e2e/tools/kube-node && $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(CURDIR)/$@ k8s.io/kubernetes/cmd/$(notdir $@)

node-tools: e2e-tools $(addprefix $(E2E_BIN)/,$(NODE_TOOLS)) ## build the node tier's control plane and kubelet

e2e-node: build node-tools ## the node tier (root): the Job controller, a scheduler, a kubelet and containerd run the agent pods
	cd test && $(GO) vet -tags 'e2e node' ./e2e && $(GO) test -tags 'e2e node' -count=1 -timeout 40m -v -run '^TestNode' ./e2e

e2e: build e2e-tools ## the end-to-end tier: real KEDA driving our ScaledJobs (logs in test/e2e/.work/logs)
	cd test && $(GO) vet -tags e2e ./e2e && $(GO) test -tags e2e -count=1 -timeout 30m -v ./e2e

image: ## build the container image (needs a container engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD) -t $(IMAGE) .

proto: ## copy KEDA's externalscaler.proto from the pinned module
	cp "$$($(GO) list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)/pkg/scalers/externalscaler/externalscaler.proto" proto/
	chmod 644 proto/externalscaler.proto
