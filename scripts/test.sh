#!/usr/bin/env bash
# The test suite on a fresh machine: installs what the tests need (scripts/setup-tests.sh:
# Debian packages as root, Python packages in virtual environments in the cache, the models),
# then runs `cargo test --release` with any arguments given. The second run skips the setup's
# work; afterwards `cargo test --release` alone works too.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-tests.sh
exec cargo test --release "$@"
