//! Run-time choice among the Burn backends compiled in (cargo features `flex`, `wgpu`, `cuda`).
//! Model and training code are generic over `Backend`; this is the one place that names them.

use anyhow::{Result, bail};
use burn::tensor::backend::AutodiffBackend;
use std::fmt;
use std::str::FromStr;

/// A backend and device, written `flex`, `wgpu`, `wgpu:cpu`, `wgpu:N`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendSpec {
    Flex,
    Wgpu(WgpuTarget),
    Cuda(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgpuTarget {
    Default,
    /// A CPU adapter such as Mesa's lavapipe.
    Cpu,
    Discrete(usize),
}

impl FromStr for BackendSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (name, device) = match s.split_once(':') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        let index = |d: &str| {
            d.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("device `{d}` in backend `{s}` is not an index"))
        };
        Ok(match (name, device) {
            ("flex", None) => Self::Flex,
            ("wgpu", None) => Self::Wgpu(WgpuTarget::Default),
            ("wgpu", Some("cpu")) => Self::Wgpu(WgpuTarget::Cpu),
            ("wgpu", Some(d)) => Self::Wgpu(WgpuTarget::Discrete(index(d)?)),
            ("cuda", None) => Self::Cuda(0),
            ("cuda", Some(d)) => Self::Cuda(index(d)?),
            _ => bail!(
                "unknown backend `{s}` (expected flex, wgpu, wgpu:cpu, wgpu:N, cuda or cuda:N)"
            ),
        })
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flex => write!(f, "flex"),
            Self::Wgpu(WgpuTarget::Default) => write!(f, "wgpu"),
            Self::Wgpu(WgpuTarget::Cpu) => write!(f, "wgpu:cpu"),
            Self::Wgpu(WgpuTarget::Discrete(i)) => write!(f, "wgpu:{i}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Work to run on whichever backend is chosen at run time.
pub trait OnBackend {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device, spec: BackendSpec) -> Self::Output;
}

/// Runs `work` on the backend `spec` names, or says which cargo feature would enable it.
pub fn dispatch<W: OnBackend>(spec: BackendSpec, work: W) -> Result<W::Output> {
    match spec {
        BackendSpec::Flex => flex(spec, work),
        BackendSpec::Wgpu(target) => wgpu(spec, target, work),
        BackendSpec::Cuda(index) => cuda(spec, index, work),
    }
}

/// The CPU training backend: flex under autodiff with balanced checkpointing, which keeps the
/// outputs of matmuls for the backward pass and recomputes the cheap element-wise ops from
/// them (a third less resident memory in a SmolLM2-135M update, and faster for it).
#[cfg(feature = "flex")]
pub type FlexAutodiff = burn::backend::Autodiff<
    burn::backend::Flex,
    burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing,
>;

#[cfg(feature = "flex")]
fn flex<W: OnBackend>(spec: BackendSpec, work: W) -> Result<W::Output> {
    Ok(work.run::<FlexAutodiff>(Default::default(), spec))
}
#[cfg(not(feature = "flex"))]
fn flex<W: OnBackend>(_: BackendSpec, _: W) -> Result<W::Output> {
    not_compiled("flex", "flex")
}

#[cfg(feature = "wgpu")]
fn wgpu<W: OnBackend>(spec: BackendSpec, target: WgpuTarget, work: W) -> Result<W::Output> {
    use burn::backend::wgpu::WgpuDevice;
    use burn::backend::{Autodiff, Wgpu};
    let device = match target {
        WgpuTarget::Default => WgpuDevice::DefaultDevice,
        WgpuTarget::Cpu => WgpuDevice::Cpu,
        WgpuTarget::Discrete(i) => WgpuDevice::DiscreteGpu(i),
    };
    Ok(work.run::<Autodiff<Wgpu>>(device, spec))
}
#[cfg(not(feature = "wgpu"))]
fn wgpu<W: OnBackend>(_: BackendSpec, _: WgpuTarget, _: W) -> Result<W::Output> {
    not_compiled("wgpu", "wgpu")
}

#[cfg(feature = "cuda")]
fn cuda<W: OnBackend>(spec: BackendSpec, index: usize, work: W) -> Result<W::Output> {
    use burn::backend::cuda::CudaDevice;
    use burn::backend::{Autodiff, Cuda};
    Ok(work.run::<Autodiff<Cuda>>(CudaDevice { index }, spec))
}
#[cfg(not(feature = "cuda"))]
fn cuda<W: OnBackend>(_: BackendSpec, _: usize, _: W) -> Result<W::Output> {
    not_compiled("cuda", "cuda")
}

#[allow(dead_code)]
fn not_compiled<T>(backend: &str, feature: &str) -> Result<T> {
    bail!(
        "backend `{backend}` is not compiled into this binary: rebuild with `--features {feature}` \
         (e.g. `cargo build --release --features {feature}`)"
    )
}

/// Keeps freed tensor memory in the process (glibc): allocations up to 32 MiB come from the
/// heap, and up to 128 MiB of free heap is kept rather than returned to the kernel. The
/// default, adaptive thresholds hand the same few-MiB tensors back and forth every op, and the
/// page faults that follow cost the tiny model's update a third of its time (no change to
/// SmolLM2's time or peak memory). `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` in the
/// environment leave glibc's settings alone.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set_by_user = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
            .iter()
            .any(|k| std::env::var_os(k).is_some());
        if !set_by_user {
            // SAFETY: mallopt only changes glibc's thresholds; called before other threads start.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
            }
        }
    }
}

/// Runs `work` on a thread of its own rayon pool, the pool flex's kernels then split their
/// work over. A kernel called from a pool thread splits there directly; one called from any
/// other thread is queued to the global pool and sleeps until it is done, a wake-up per op
/// that cost the tiny model's update a sixth of its time. A pool per call, not the global one:
/// an engine blocked on a command holds only its own thread, and a pool thread waiting on a
/// split never picks up another engine's whole run. On a GPU backend the pool just sits idle.
pub fn on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("selm-compute-{i}"))
        .build();
    match pool {
        Ok(pool) => pool.install(work),
        // No threads to be had: run on this thread, each op queued to the global pool.
        Err(_) => work(),
    }
}

/// The SIMD kernel set flex's matrix products run with on this machine: the widest the CPU
/// has among those compiled in (the `avx512` cargo feature adds gemm's AVX-512 kernels; a
/// build without it runs the AVX2 path on any x86-64 CPU, which is how that path is measured
/// on an AVX-512 machine). [`crate::model::decode_matmul`] dispatches on the same choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuKernels {
    Avx512,
    Avx2,
    /// What the compiler targets by default (SSE2 on x86-64, NEON on aarch64).
    Baseline,
}

impl CpuKernels {
    pub fn detect() -> Self {
        static DETECTED: std::sync::OnceLock<CpuKernels> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f") {
                    return Self::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    return Self::Avx2;
                }
            }
            Self::Baseline
        })
    }
}

impl fmt::Display for CpuKernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Avx512 => "AVX-512",
            Self::Avx2 => "AVX2+FMA",
            Self::Baseline if cfg!(target_arch = "aarch64") => "NEON",
            Self::Baseline if cfg!(target_arch = "x86_64") => "SSE2",
            Self::Baseline => "portable",
        })
    }
}

/// The backends this binary was built with.
pub fn compiled_in() -> Vec<&'static str> {
    let mut out = vec![];
    if cfg!(feature = "flex") {
        out.push("flex");
    }
    if cfg!(feature = "wgpu") {
        out.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        out.push("cuda");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_specs() {
        for s in ["flex", "wgpu", "wgpu:cpu", "wgpu:1", "cuda:0"] {
            assert_eq!(s.parse::<BackendSpec>().unwrap().to_string(), s);
        }
        assert_eq!("cuda".parse::<BackendSpec>().unwrap(), BackendSpec::Cuda(0));
        let err = "tpu".parse::<BackendSpec>().unwrap_err().to_string();
        assert!(err.contains("unknown backend `tpu`"), "{err}");
        assert!("cuda:x".parse::<BackendSpec>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn missing_backend_names_the_feature() {
        struct Nothing;
        impl OnBackend for Nothing {
            type Output = ();
            fn run<B: AutodiffBackend>(self, _: B::Device, _: BackendSpec) {}
        }
        let err = dispatch(BackendSpec::Cuda(0), Nothing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
