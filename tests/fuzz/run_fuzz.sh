#!/bin/sh
# fuzz.NAME (tests/fuzz/CMakeLists.txt): replay every seed, then fuzz from the seeds for a few
# seconds. New inputs go to a scratch directory (the seeds in the repository stay as they
# are); a crashing input is kept under ARTIFACTS and fails the test.
set -eu
bin=$1 seeds=$2 seconds=$3 artifacts=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
name=$(basename "$bin")
# Every seed once: a regression on a known input fails here, by name.
"$bin" -runs=0 -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$artifacts/$name-" "$seeds"
"$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
	-artifact_prefix="$artifacts/$name-" "$work" "$seeds"
