# azdo-keda-scaler. `make run` starts the demo; `make test` runs every test.
GO        ?= go
BIN       := bin/azdo-keda-scaler
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app.Version=$(VERSION)
FUZZTIME  ?= 10s
IMAGE     ?= azdo-keda-scaler:$(VERSION)

.PHONY: all build run test lint unit fuzz ship manifests bench e2e image proto help

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build the binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/azdo-keda-scaler

run: build ## start the scaler against the embedded simulated organization
	./$(BIN) --demo --grpc-addr 127.0.0.1:6000 --http-addr 127.0.0.1:8080 --refresh-interval 2s

test: lint unit fuzz ship ## everything CI runs before the end-to-end tier

lint: ## gofmt and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-formatted: $$unformatted"; exit 1; fi
	$(GO) vet ./...

unit: ## unit and component tests, with the race detector
	$(GO) test -race -count=1 ./...

fuzz: ## each fuzz target for FUZZTIME (default 10s)
	$(GO) test -run '^$$' -fuzz '^FuzzDemandEvaluation$$' -fuzztime $(FUZZTIME) ./scaler/demands
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./scaler/trigger

ship: ## what we ship: charts (Helm SDK), deploy/ drift, Dockerfiles, start.sh (needs bash, curl, shellcheck)
	shellcheck deploy/agent/start.sh .ci/run
	cd test && $(GO) vet ./... && $(GO) test -race -count=1 ./charts ./dockerfiles ./agent

manifests: ## regenerate deploy/ from the charts
	cd test && $(GO) test -count=1 -run TestManifestsUpToDate ./charts -update

bench: ## micro-benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./scaler/pools ./scaler/service

image: ## build the container image (needs a container engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD) -t $(IMAGE) .

proto: ## copy KEDA's externalscaler.proto from the pinned module
	cp "$$($(GO) list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)/pkg/scalers/externalscaler/externalscaler.proto" proto/
	chmod 644 proto/externalscaler.proto
