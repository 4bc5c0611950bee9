//! Learning-rate schedule: linear warmup, then cosine decay to zero, as transformers'
//! `get_cosine_schedule_with_warmup` (warmup steps = ceil(ratio * total)).

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineWithWarmup {
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl CosineWithWarmup {
    pub fn new(peak_lr: f64, warmup_ratio: f64, total_steps: usize) -> Self {
        let warmup_steps = (warmup_ratio * total_steps as f64).ceil() as usize;
        Self {
            peak_lr,
            warmup_steps,
            total_steps,
        }
    }

    /// A schedule that keeps `lr` fixed.
    pub fn constant(lr: f64) -> Self {
        Self {
            peak_lr: lr,
            warmup_steps: 0,
            total_steps: 0,
        }
    }

    /// Whether warmup covers every step: none runs at the peak rate, and a lone step runs at
    /// 0 (one step with any warmup ratio above 0).
    pub fn warmup_swallows_all(&self) -> bool {
        self.total_steps > 0 && self.warmup_steps >= self.total_steps
    }

    /// The rate for optimizer step `step` (0-based), as the HF LambdaLR yields it.
    pub fn lr(&self, step: usize) -> f64 {
        if self.total_steps == 0 {
            return self.peak_lr;
        }
        if step < self.warmup_steps {
            return self.peak_lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let span = (self.total_steps - self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / span;
        let factor = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak_lr * factor.max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = CosineWithWarmup::new(1e-3, 0.1, 100);
        assert_eq!(s.warmup_steps, 10);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-4).abs() < 1e-12);
        assert!((s.lr(10) - 1e-3).abs() < 1e-12);
        assert!((s.lr(55) - 5e-4).abs() < 1e-12); // halfway through the decay
        assert!(s.lr(100).abs() < 1e-12);
        assert_eq!(CosineWithWarmup::new(1.0, 0.1, 3).warmup_steps, 1); // ceil
        // One step with any warmup: all warmup, at lr 0.
        let one = CosineWithWarmup::new(1.0, 0.1, 1);
        assert!(one.warmup_swallows_all() && one.lr(0) == 0.0);
        assert!(!CosineWithWarmup::new(1.0, 0.1, 12).warmup_swallows_all());
        assert!(!CosineWithWarmup::new(1.0, 0.0, 1).warmup_swallows_all());
        assert_eq!(CosineWithWarmup::constant(2e-5).lr(1000), 2e-5);
    }
}
