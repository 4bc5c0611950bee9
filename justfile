# Recipes for common tasks (https://github.com/casey/just). Each is a plain cargo command.

# The test suite (the same command CI runs).
test:
    cargo test --release

# Forward-logits parity on wgpu; without a GPU it runs on Mesa lavapipe (mesa-vulkan-drivers).
test-wgpu:
    cargo test --release --features wgpu --test wgpu_parity

# Training and decoding throughput on flex, tiny and SmolLM2-135M shapes (one process each,
# so each peak-memory figure is its own).
bench:
    cargo run --release -- bench --preset tiny
    cargo run --release -- bench --preset smollm2-135m --steps 2

# Formatting and lints, as CI expects them.
lint:
    cargo fmt --all -- --check
    cargo clippy --release --all-targets -- -D warnings
