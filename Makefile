# containerflow — the two commands a newcomer needs are `make demo` and
# `make test` (as root). Both run scripts/bootstrap.sh first, which installs
# runc, nftables, iproute2 and a CRIU that works on this kernel, idempotently.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
BIN     := bin/cflow
GOFLAGS_TEST ?= -count=1 -timeout 45m

.PHONY: all demo test deps build vet generate clean fuzz

all: build

deps:
	@bash scripts/bootstrap.sh

# Static (no cgo): the agents bind it into every container at /opt/cflow/bin,
# and an image need not have the host's libc for it to run.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/cflow

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# The main job: the doctor, then the migration experiment on the emulated
# testbed (the seed's run_experiment.sh, shortened): WebSocket workload in a
# container, load generator, collector, 6 live migrations, plots and a
# report under results/ (the last line names it).
demo: deps build
	./$(BIN) doctor
	./$(BIN) experiment --prefix cfdemo --steady-state 10 --post-migration 8 --migrations 6 --out results

# Every test, on the real kernel, CRIU and runc, as root. test-deps.sh adds
# what only tests need: busybox-static, and Debian's nginx downloaded (not
# installed) for an image.
test: deps vet
	@bash scripts/test-deps.sh
	$(GO) test $(GOFLAGS_TEST) ./...

# Every fuzz target for FUZZTIME each (default 5s; about 2 minutes in all,
# most of it compiling with coverage instrumentation, so it is not part of
# `make test`, which runs the fuzz targets' seed corpora as plain tests).
# Longer: make fuzz FUZZTIME=10m. See docs/security.md#fuzzing.
fuzz:
	FUZZTIME=$(or $(FUZZTIME),5s) bash scripts/fuzz.sh

# Regenerate the eBPF objects (needs clang; the output is committed).
generate:
	$(GO) generate ./internal/dataplane/...

clean:
	rm -rf bin
