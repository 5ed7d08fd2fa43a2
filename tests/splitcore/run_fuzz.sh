#!/bin/sh
# Builds splitcore/fuzz with clang (libFuzzer + ASan + UBSan) in BUILD_DIR and runs a bounded
# session on a copy of the seed corpus. Usage: run_fuzz.sh SOURCE_DIR BUILD_DIR [RUNS]
set -eu
source_dir=$1
build_dir=$2
runs=${3:-20000}
cmake -S "$source_dir/splitcore/fuzz" -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$build_dir.configure.log" 2>&1 || { cat "$build_dir.configure.log"; exit 1; }
cmake --build "$build_dir"
rm -rf "$build_dir/corpus"
cp -r "$source_dir/splitcore/fuzz/corpus" "$build_dir/corpus"
# Python's own allocations at exit are not ours to report.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$build_dir/fuzz_decode" -runs="$runs" -max_total_time=60 -max_len=4096 -timeout=10 \
  -artifact_prefix="$build_dir/" "$build_dir/corpus"
