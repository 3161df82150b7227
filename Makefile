# pgquorum — make targets. `make test` is what CI runs (see .ci/run).
GO        ?= go
BIN       ?= bin/pgquorum
PKGS      ?= ./...
PROTO_DIR := proto

.PHONY: all build test test-short lint proto deps tools clean demo demo-failover demo-stop bench-failover bench-switchover bench-idle chaos fuzz-short

all: build

## build: compile the pgquorum binary into bin/
build:
	$(GO) build -o $(BIN) ./cmd/pgquorum

## deps: install what is missing (root, Debian packages): PostgreSQL 15, PgBouncer, protoc, iptables, iproute2, openssl (scripts/install-deps.sh)
deps:
	scripts/install-deps.sh

## test: install what is missing, then run every test with the race detector
test: deps
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -p 1 -timeout 40m $(PKGS)
	$(MAKE) fuzz-short
	$(GO) test -tags chaos -count=1 -run '^TestChaosShort$$' -timeout 15m ./internal/chaos

## test-short: unit and in-process tests only (no real Postgres/PgBouncer)
test-short:
	$(GO) test -short -count=1 $(PKGS)

## fuzz-short: each fuzz target for FUZZTIME from its committed seed corpus
## (testdata/fuzz/<Name>/); go test -fuzz takes one package and one target.
## A count of inputs, not a duration: with a duration the fuzzer fails with
## "context deadline exceeded" when its time runs out while a worker is busy
## on a loaded machine (seen in CI), which is no finding at all.
FUZZTIME     ?= 40000x
FUZZ_TARGETS := ./fsm:FuzzDecode ./fsm:FuzzRestore ./fsm:FuzzApply ./server/config:FuzzLoad ./bouncer:FuzzRender
fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
	  $(GO) test -count=1 -run='^$$' -fuzz="^$${t#*:}\$$" -fuzztime=$(FUZZTIME) $${t%%:*}; \
	done

## lint: gofmt, go vet, staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

## tools: install the protoc plugins
tools:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1

## proto: regenerate the committed Go code from proto/*.proto
proto: tools
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc -I $(PROTO_DIR) \
	  --go_out=$(PROTO_DIR) --go_opt=paths=source_relative \
	  --go-grpc_out=$(PROTO_DIR) --go-grpc_opt=paths=source_relative \
	  $$(find $(PROTO_DIR) -name '*.proto')

clean:
	rm -rf bin

## demo: a three-node cluster on loopback under ./demo
demo:
	scripts/demo.sh start

demo-failover:
	scripts/demo.sh failover

demo-stop:
	scripts/demo.sh stop

## bench-failover: kill the primary host N times behind PgBouncer (TRIALS, PROFILE)
TRIALS  ?= 5
PROFILE ?= default
bench-failover: deps
	PGQUORUMBENCH=failover PGQUORUMBENCH_TRIALS=$(TRIALS) PGQUORUMBENCH_PROFILE=$(PROFILE) \
	  $(GO) test -count=1 -timeout 60m -run '^TestBenchFailover$$' -v ./internal/e2e/ | grep -E 'trial|FAILOVER|FAIL|ok|PASS'

## bench-switchover: N planned switchovers under load through PgBouncer
bench-switchover: deps
	PGQUORUMBENCH=switchover PGQUORUMBENCH_TRIALS=$(TRIALS) PGQUORUMBENCH_PROFILE=$(PROFILE) \
	  $(GO) test -count=1 -timeout 60m -run '^TestBenchSwitchover$$' -v ./internal/e2e/ | grep -E 'trial|SWITCHOVER|FAIL|ok|PASS'

## bench-idle: CPU and RSS of each agent of an idle three-node cluster (WINDOW, PROFILE)
WINDOW ?= 60s
bench-idle: deps
	PGQUORUMBENCH=idle PGQUORUMBENCH_PROFILE=$(PROFILE) PGQUORUMBENCH_WINDOW=$(WINDOW) \
	  $(GO) test -count=1 -timeout 30m -run '^TestBenchIdle$$' -v ./internal/e2e/ | grep -E 'IDLE|FAIL|ok|PASS'

## chaos: a fault campaign in network namespaces (root; DURATION, SEED to replay; see docs/chaos.md)
DURATION ?= 30m
SEED     ?=
chaos: deps
	CHAOS_DURATION=$(DURATION) SEED=$(SEED) \
	  $(GO) test -tags chaos -count=1 -v -run '^TestChaosCampaign$$' -timeout 3h ./internal/chaos
