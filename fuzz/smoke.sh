#!/usr/bin/env bash
# The fuzz smoke: builds the cargo-fuzz targets (no sanitizer) and runs each for a bounded
# time on its seeds (fuzz/seeds/<target>, which includes the regression inputs of fixed
# crashes), growing fuzz/corpus/<target> (git-ignored). Exits non-zero on the first crash,
# hang or oversized allocation; the input is left in fuzz/artifacts/<target>/.
#
#   fuzz/smoke.sh [SECONDS_PER_TARGET [TARGET...]]     # default: 20 s, every target
#
# (A crash of a target while fuzzing ends that target only; the script stops at the first.)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo +nightly install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# One build for all targets; `run` below reuses it (same flags, so no rebuild).
# $FUZZ_TARGET_DIR: another build directory than fuzz/target.
flags=(-s none ${FUZZ_TARGET_DIR:+--target-dir "$FUZZ_TARGET_DIR"})
start=$(date +%s)
cargo +nightly fuzz build "${flags[@]}"
echo "fuzz smoke: targets built in $(($(date +%s) - start)) s"

for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  case "$t" in
    gguf | safetensors_config) max_len=16384 ;;
    *) max_len=8192 ;;
  esac
  log="fuzz/corpus/$t.log"
  # One process, one worker; -timeout: a single input running 10 s is a hang.
  if ! cargo +nightly fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -max_len="$max_len" -print_final_stats=1 \
    >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz smoke: target $t FAILED (full log: $log); the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz smoke: $t clean, ${runs:-?} runs in ${secs} s"
done
echo "fuzz smoke: all ${#targets[@]} targets clean in $(($(date +%s) - start)) s"
