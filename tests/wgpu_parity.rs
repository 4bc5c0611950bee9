//! Forward-logits parity on the wgpu backend (Mesa lavapipe on machines without a GPU:
//! `apt-get install mesa-vulkan-drivers`). Built only with `--features wgpu`.
#![cfg(feature = "wgpu")]

mod common;

use burn::backend::Wgpu;
use burn::backend::wgpu::WgpuDevice;
use common::*;
use selm_tui::model::load::load_hf_dir;

fn device() -> WgpuDevice {
    // SELM_WGPU_DEVICE=default picks the real adapter where there is one.
    match std::env::var("SELM_WGPU_DEVICE").as_deref() {
        Ok("default") => WgpuDevice::DefaultDevice,
        _ => WgpuDevice::Cpu,
    }
}

fn check(name: &str) {
    let model = load_hf_dir::<Wgpu>(&fixture(name), &device()).expect("model loads");
    check_forward_logits(&model, name);
}

#[test]
fn wgpu_llama_forward_logits() {
    check("tiny-llama");
}

#[test]
fn wgpu_qwen2_forward_logits() {
    check("tiny-qwen2");
}
