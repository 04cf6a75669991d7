#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (default 5s). `go test -fuzz`
# takes one package and one target per run, hence the loop. Inputs that
# fail are written to the package's testdata/fuzz/ and re-run by plain
# `go test` from then on: commit them with the fix.
#   FUZZTIME=10m scripts/fuzz.sh                 # longer
#   scripts/fuzz.sh FuzzReceiveEntries           # only the targets named
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-5s}
targets=(
	"./internal/agent FuzzRequestDecoding"
	"./internal/migration/transfer FuzzReceive"
	"./internal/migration/transfer FuzzReceiveEntries"
	"./internal/image FuzzLoad"
	"./internal/migration FuzzReadKV"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then
		continue
	fi
	echo "== $name ($pkg) for $FUZZTIME"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"
done
