# containerflow — the two commands a newcomer needs are `make demo` and
# `make test` (as root). Both run scripts/bootstrap.sh first, which installs
# runc, nftables, iproute2 and a CRIU that works on this kernel, idempotently.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
BIN     := bin/cflow
GOFLAGS_TEST ?= -count=1 -timeout 45m

.PHONY: all demo test deps build vet generate clean

all: build

deps:
	@bash scripts/bootstrap.sh

build:
	$(GO) build -o $(BIN) ./cmd/cflow

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# The main job: the doctor, a testbed smoke run, then live migrations of a
# streaming workload with the client-visible downtime and every lost byte
# counted (results in results/demo/).
demo: deps build
	./$(BIN) doctor
	./$(BIN) testbed smoke --prefix cfdemo
	mkdir -p results/demo
	./$(BIN) bench migrate --prefix cfdemo --migrations 6 --connections 8 \
		--records results/demo --json results/demo/bench-migrate.json

# Every test, on the real kernel, CRIU and runc, as root.
test: deps vet
	$(GO) test $(GOFLAGS_TEST) ./...

# Regenerate the eBPF objects (needs clang; the output is committed).
generate:
	$(GO) generate ./internal/dataplane/...

clean:
	rm -rf bin
