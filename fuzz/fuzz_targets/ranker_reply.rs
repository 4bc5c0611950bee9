//! One reply line of an external ranker (`parse_reply`). The first input byte (mod 16) is
//! the number of candidates the request had; the rest is the line. A reply that is
//! accepted has exactly one finite score per candidate. Any input may be an error; none may
//! panic.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use selm_tui::ranker::process::parse_reply;

fuzz_target!(|data: &[u8]| {
    let Some((&n, line)) = data.split_first() else {
        return;
    };
    let n = (n % 16) as usize;
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    match parse_reply("fuzz", line, n) {
        Ok(scores) => {
            assert_eq!(scores.len(), n);
            assert!(scores.iter().all(|s| s.is_finite()), "{scores:?}");
        }
        Err(e) => {
            let _ = format!("{e:#}");
        }
    }
});
