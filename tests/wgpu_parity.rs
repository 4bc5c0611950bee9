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
    let exp = expected(name);
    let model = load_hf_dir::<Wgpu>(&fixture(name), &device()).expect("model loads");
    let fwd = &exp["forward"];
    let rows: Vec<Vec<u32>> = fwd["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    let masks: Vec<Vec<u32>> = fwd["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    let real: Vec<Vec<u32>> = rows
        .iter()
        .zip(&masks)
        .map(|(r, m)| {
            r.iter()
                .zip(m)
                .filter(|(_, m)| **m == 1)
                .map(|(t, _)| *t)
                .collect()
        })
        .collect();
    let (logits, lens) = model.forward_padded(&real, 0);
    let [_, seq, vocab] = logits.dims();
    let got = logits.into_data().into_vec::<f32>().unwrap();
    let mut compared = 0;
    for (b, want_row) in fwd["logits"].as_array().unwrap().iter().enumerate() {
        for (t, want_pos) in want_row.as_array().unwrap().iter().enumerate() {
            for (v, want) in floats(want_pos).into_iter().enumerate() {
                let g = got[(b * seq + t) * vocab + v] as f64;
                assert_close(
                    &format!("wgpu {name} logits[{b}][{t}][{v}]"),
                    g,
                    want,
                    1e-4,
                    1e-4,
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, lens.iter().sum::<usize>() * vocab);
}

#[test]
fn wgpu_llama_forward_logits() {
    check("tiny-llama");
}

#[test]
fn wgpu_qwen2_forward_logits() {
    check("tiny-qwen2");
}
