#!/usr/bin/env bash
# Renders the README's pictures from a real run: the embedded default run headless (3 SELM
# iterations of the built-in model, seconds on a CPU), then `selm-tui inspect RUN --screenshot`
# of the dashboard, the pair inspector and the rank desk, as SVG and PNG.
#
#   scripts/screenshots.sh [OUT_DIR]      # default: assets/screenshots
#
# $SELM_TUI names the binary to use (default: target/release/selm-tui, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-assets/screenshots}
bin=${SELM_TUI:-target/release/selm-tui}
if [[ ! -x $bin ]]; then
    cargo build --release --bin selm-tui
fi
bin=$(realpath "$bin")
mkdir -p "$out"
out=$(realpath "$out")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# From inside the temporary directory, so that the pictures show `runs/NAME`, not /tmp/....
cd "$tmp"
"$bin" run --headless --out-dir runs >run.log
run=$(find runs -mindepth 1 -maxdepth 1 -type d | head -n 1)
for view in dashboard pair rank; do
    for ext in svg png; do
        "$bin" inspect "$run" --screenshot "$out/$view.$ext" --view "$view"
    done
done
