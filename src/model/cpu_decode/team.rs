//! The threads one forward call runs on: started once per call, they walk the layers
//! together and meet at a spinning barrier between stages. A fork-join pool would put its
//! threads to sleep after each product and wake them for the next (five times per layer),
//! and on a small model each wake-up costs about as much as the product it serves.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// One thread's place in the team: which share of each stage's work is its own.
#[derive(Clone, Copy)]
pub struct Member<'a> {
    pub id: usize,
    pub count: usize,
    barrier: &'a Barrier,
}

impl Member<'_> {
    /// Waits until every member has reached this point.
    pub fn sync(&self) {
        self.barrier.wait();
    }

    /// This member's part of `0..len`, in contiguous shares. Where an item is computed never
    /// changes what it computes: results do not depend on the number of threads.
    pub fn share(&self, len: usize) -> std::ops::Range<usize> {
        len * self.id / self.count..len * (self.id + 1) / self.count
    }
}

/// Runs `work` on `threads` threads at once (this one and `threads - 1` started for it).
pub fn run(threads: usize, work: impl Fn(Member<'_>) + Sync) {
    let threads = threads.max(1);
    let barrier = Barrier::new(threads);
    let member = |id| Member {
        id,
        count: threads,
        barrier: &barrier,
    };
    // A member that panics never reaches the next barrier: it poisons the barrier on its way
    // out, so that the others panic too instead of waiting for it.
    let guarded = |member: Member<'_>| {
        let _poison = Poison(member.barrier);
        work(member)
    };
    std::thread::scope(|s| {
        for id in 1..threads {
            let guarded = &guarded;
            let member = member(id);
            std::thread::Builder::new()
                .name(format!("selm-decode-{id}"))
                .spawn_scoped(s, move || guarded(member))
                .expect("starting a decode thread");
        }
        guarded(member(0));
    });
}

/// Marks the barrier poisoned when dropped during a panic.
struct Poison<'a>(&'a Barrier);

impl Drop for Poison<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Release);
        }
    }
}

/// A reusable barrier that spins briefly, then yields: the stages it separates last tens of
/// microseconds, shorter than a futex sleep and wake-up, and yielding keeps it fair when
/// there are more threads than cores (tests in parallel).
struct Barrier {
    count: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

impl Barrier {
    fn new(count: usize) -> Self {
        Self {
            count,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    fn wait(&self) {
        if self.count == 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.count {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.poisoned.load(Ordering::Acquire) {
                panic!("another decode thread panicked");
            }
            if spins < 4096 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A buffer the members write in disjoint parts (columns of a row-major matrix, heads of a
/// row) during one stage and read whole after the barrier.
pub struct Shared<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: members write disjoint elements between barriers (each stage's shares never
// overlap) and read only after the barrier that follows the writes.
unsafe impl Send for Shared<'_> {}
unsafe impl Sync for Shared<'_> {}

impl<'a> Shared<'a> {
    pub fn new(buffer: &'a mut [f32]) -> Self {
        Self {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: std::marker::PhantomData,
        }
    }

    /// The whole buffer, to read.
    ///
    /// # Safety
    /// No member writes it until the next barrier.
    pub unsafe fn read(&self) -> &[f32] {
        // SAFETY: ptr and len come from a live `&mut [f32]`; writes are excluded by the caller.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The start of the buffer, to write.
    ///
    /// # Safety
    /// Until the next barrier, the caller writes only elements no other member touches.
    pub unsafe fn ptr(&self) -> *mut f32 {
        self.ptr
    }

    /// `range` of the buffer, to write.
    ///
    /// # Safety
    /// As for [`Shared::ptr`]: no other member touches `range` until the next barrier.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (asserted); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::{Shared, run};

    #[test]
    fn members_split_the_work_and_meet_between_stages() {
        for threads in [1, 2, 3, 5] {
            let mut a = vec![0f32; 100];
            let mut b = vec![0f32; 100];
            let (sa, sb) = (Shared::new(&mut a), Shared::new(&mut b));
            run(threads, |m| {
                for i in m.share(100) {
                    // SAFETY: shares are disjoint.
                    unsafe { sa.slice(i..i + 1)[0] = i as f32 };
                }
                m.sync();
                // Reads what the other members wrote before the barrier.
                let all = unsafe { sa.read() }.to_vec();
                for i in m.share(100) {
                    unsafe { sb.slice(i..i + 1)[0] = all[99 - i] };
                }
                m.sync();
            });
            let want: Vec<f32> = (0..100).rev().map(|i| i as f32).collect();
            assert_eq!(b, want, "{threads} threads");
        }
    }

    #[test]
    fn a_member_that_panics_stops_the_others_instead_of_hanging_them() {
        let outcome = std::panic::catch_unwind(|| {
            run(3, |m| {
                if m.id == 1 {
                    panic!("member 1 fails");
                }
                m.sync();
                m.sync();
            })
        });
        assert!(outcome.is_err());
    }
}
