#!/usr/bin/env bash
# Runs the tests of every Go module in the repository. Extra arguments go to
# `go test` (e.g. -run, -count). The race detector is on when cgo works
# (it needs a C compiler); SSE_REQUIRE_RACE=1 makes its absence an error.
set -euo pipefail
cd "$(dirname "$0")/.."

race=()
if [ "$(go env CGO_ENABLED)" = 1 ] && command -v "$(go env CC)" >/dev/null 2>&1; then
	race=(-race)
elif [ "${SSE_REQUIRE_RACE:-}" = 1 ]; then
	echo "test.sh: the race detector needs cgo and a C compiler" >&2
	exit 1
else
	echo "test.sh: no C compiler: running without -race" >&2
fi

status=0
while IFS= read -r mod; do
	dir=$(dirname "$mod")
	echo "== go test ${dir}"
	(cd "$dir" && go test "${race[@]}" "$@" ./...) || status=1
done < <(find . -name go.mod -not -path './_*' -not -path '*/testdata/*' | sort)
exit $status
