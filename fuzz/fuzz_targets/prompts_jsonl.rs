//! A prompts file (JSON lines: a `prompt` string, TRL's conversational `prompt`, or
//! `messages`): `parse_jsonl_prompts`, which runs `parse_prompt_line` on every non-blank line.
//! A prompt that is accepted has a non-blank text, the last user message of its
//! conversation. Any input may be an error; none may panic.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use selm_tui::prompts::{parse_jsonl_prompts, parse_prompt_line};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(prompts) = parse_jsonl_prompts(text, "fuzz.jsonl") else {
        return;
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(prompts.len(), lines.len());
    for (p, line) in prompts.iter().zip(lines) {
        assert!(!p.text.trim().is_empty());
        let last_user = p.messages.iter().rev().find(|m| m.role == "user");
        assert_eq!(last_user.map(|m| m.content.as_str()), Some(p.text.as_str()));
        // The file parser also records the line number; the rest is the line's own parse.
        assert!(p.line.is_some());
        let mut single = parse_prompt_line(line).expect("accepted above");
        single.line = p.line;
        assert_eq!(&single, p);
    }
});
