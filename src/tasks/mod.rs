//! Built-in verifiable text tasks with exact rewards in [0, 1] that give partial credit.
//! Prompts are short enough for the tiny built-in model: `12+345=`, `sort 5 2 8:`,
//! `rev abcd:`, `count a in banana:`.

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Multi-digit addition, scored by correct digits (aligned from the right).
    Add,
    /// Sorting a short list of digits, scored by correct positions.
    Sort,
    /// Reversing a word, scored by edit similarity.
    Rev,
    /// Counting a letter in a word, scored 1 / (1 + |error|).
    Count,
    /// Reversing a three-letter word, scored by edit similarity: the built-in model gets it
    /// exactly right in about 1 sample in 200 at temperature 1 while most answers are partly
    /// right, so whether optimism finds the rare best answers is measurable.
    #[serde(rename = "rev3")]
    Rev3,
}

impl TaskKind {
    /// The tasks the built-in model is trained on (`selm-tui sft`).
    pub const SFT: [TaskKind; 4] = [Self::Add, Self::Sort, Self::Rev, Self::Count];

    pub const ALL: [TaskKind; 5] = [Self::Add, Self::Sort, Self::Rev, Self::Count, Self::Rev3];

    pub fn name(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Sort => "sort",
            Self::Rev => "rev",
            Self::Count => "count",
            Self::Rev3 => "rev3",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| anyhow::anyhow!("unknown task `{name}` (add, sort, rev, count, rev3)"))
    }
}

/// One task instance: the prompt text and the exact answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskPrompt {
    pub kind: TaskKind,
    pub prompt: String,
    pub answer: String,
}

impl TaskPrompt {
    /// Exact reward of `response` in [0, 1].
    pub fn reward(&self, response: &str) -> f64 {
        let r = response.trim();
        match self.kind {
            TaskKind::Add => digit_credit(r, &self.answer),
            TaskKind::Sort => position_credit(r, &self.answer),
            TaskKind::Rev | TaskKind::Rev3 => edit_similarity(r, &self.answer),
            TaskKind::Count => match r.parse::<i64>() {
                Ok(n) => 1.0 / (1.0 + (n - self.answer.parse::<i64>().unwrap_or(0)).abs() as f64),
                Err(_) => 0.0,
            },
        }
    }
}

/// Correct digits aligned from the right, over the longer length.
fn digit_credit(got: &str, want: &str) -> f64 {
    if got.is_empty() || !got.bytes().all(|b| b.is_ascii_digit()) {
        return 0.0;
    }
    let hits = got
        .bytes()
        .rev()
        .zip(want.bytes().rev())
        .filter(|(a, b)| a == b)
        .count();
    hits as f64 / got.len().max(want.len()) as f64
}

/// Items in the right place, over the longer list.
fn position_credit(got: &str, want: &str) -> f64 {
    let got: Vec<&str> = got.split_whitespace().collect();
    let want: Vec<&str> = want.split_whitespace().collect();
    if got.is_empty() {
        return 0.0;
    }
    let hits = got.iter().zip(&want).filter(|(a, b)| a == b).count();
    hits as f64 / got.len().max(want.len()) as f64
}

/// 1 - Levenshtein distance / longer length.
fn edit_similarity(got: &str, want: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) = (got.chars().collect(), want.chars().collect());
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    1.0 - prev[b.len()] as f64 / longest as f64
}

/// Draws one instance of `kind`.
pub fn sample(kind: TaskKind, rng: &mut StdRng) -> TaskPrompt {
    let letters = |rng: &mut StdRng, n: usize, alphabet: &[u8]| -> String {
        (0..n)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
            .collect()
    };
    match kind {
        TaskKind::Add => {
            let a = rng.random_range(10..1000u32);
            let b = rng.random_range(10..1000u32);
            TaskPrompt {
                kind,
                prompt: format!("{a}+{b}="),
                answer: (a + b).to_string(),
            }
        }
        TaskKind::Sort => {
            let n = rng.random_range(3..=5);
            let mut xs: Vec<u32> = (0..n).map(|_| rng.random_range(0..10)).collect();
            let prompt = format!("sort {}:", join(&xs));
            xs.sort_unstable();
            TaskPrompt {
                kind,
                prompt,
                answer: join(&xs),
            }
        }
        TaskKind::Rev | TaskKind::Rev3 => {
            let n = if kind == TaskKind::Rev3 {
                3
            } else {
                rng.random_range(3..=6)
            };
            let word = letters(rng, n, b"abcdefghijklmnopqrstuvwxyz");
            TaskPrompt {
                kind,
                prompt: format!("rev {word}:"),
                answer: word.chars().rev().collect(),
            }
        }
        TaskKind::Count => {
            let n = rng.random_range(4..=8);
            // A small alphabet so that letters repeat.
            let word = letters(rng, n, b"abcde");
            let target = word.as_bytes()[rng.random_range(0..n)] as char;
            let count = word.chars().filter(|&c| c == target).count();
            TaskPrompt {
                kind,
                prompt: format!("count {target} in {word}:"),
                answer: count.to_string(),
            }
        }
    }
}

/// A plausible wrong answer to `task`: one digit, item or letter off. Used to make the SFT
/// data noisy, so the built-in model answers wrongly part of the time in task-shaped ways.
pub fn corrupt(task: &TaskPrompt, rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = task.answer.chars().collect();
    match task.kind {
        TaskKind::Count => {
            let n: i64 = task.answer.parse().unwrap_or(0);
            let delta = if n == 0 || rng.random_bool(0.5) {
                1
            } else {
                -1
            };
            (n + delta).to_string()
        }
        TaskKind::Sort if chars.len() >= 3 => {
            // Swap two neighbouring items (positions 0, 2, 4... hold the digits).
            let i = 2 * rng.random_range(0..chars.len() / 2);
            chars.swap(i, i + 2);
            if chars == task.answer.chars().collect::<Vec<_>>() {
                chars[i] = char::from_digit((chars[i].to_digit(10).unwrap_or(0) + 1) % 10, 10)
                    .unwrap_or('0');
            }
            chars.into_iter().collect()
        }
        _ => {
            let i = rng.random_range(0..chars.len());
            let alphabet: &[u8] = if matches!(task.kind, TaskKind::Rev | TaskKind::Rev3) {
                b"abcdefghijklmnopqrstuvwxyz"
            } else {
                b"0123456789"
            };
            let mut c = chars[i];
            while c == chars[i] {
                c = alphabet[rng.random_range(0..alphabet.len())] as char;
            }
            chars[i] = c;
            chars.into_iter().collect()
        }
    }
}

fn join(xs: &[u32]) -> String {
    xs.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

/// Deterministic prompt sets: held-out evaluation prompts first, then training prompts that
/// never repeat one of them (or each other).
#[derive(Debug, Clone)]
pub struct PromptSets {
    pub train: Vec<TaskPrompt>,
    pub eval: Vec<TaskPrompt>,
}

impl PromptSets {
    pub fn new(kinds: &[TaskKind], seed: u64, n_train: usize, n_eval: usize) -> Result<Self> {
        if kinds.is_empty() {
            bail!("at least one task kind is needed");
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seen = HashSet::new();
        let mut draw = |n: usize, rng: &mut StdRng| -> Result<Vec<TaskPrompt>> {
            let mut out = Vec::with_capacity(n);
            let mut tries = 0;
            while out.len() < n {
                tries += 1;
                if tries > 100 * n + 1000 {
                    bail!("could not draw {n} distinct prompts from tasks {kinds:?}");
                }
                let kind = kinds[out.len() % kinds.len()];
                let p = sample(kind, rng);
                if seen.insert(p.prompt.clone()) {
                    out.push(p);
                }
            }
            Ok(out)
        };
        let eval = draw(n_eval, &mut rng)?;
        let train = draw(n_train, &mut rng)?;
        Ok(Self { train, eval })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kind: TaskKind, answer: &str) -> TaskPrompt {
        TaskPrompt {
            kind,
            prompt: String::new(),
            answer: answer.into(),
        }
    }

    #[test]
    fn rewards_give_partial_credit() {
        let add = p(TaskKind::Add, "357");
        assert_eq!(add.reward("357"), 1.0);
        assert!((add.reward("347") - 2.0 / 3.0).abs() < 1e-12);
        assert!((add.reward("57") - 2.0 / 3.0).abs() < 1e-12);
        assert!((add.reward("1357") - 0.75).abs() < 1e-12);
        assert_eq!(add.reward("3x7"), 0.0);
        assert_eq!(add.reward(""), 0.0);

        let sort = p(TaskKind::Sort, "2 5 8");
        assert_eq!(sort.reward(" 2 5 8 "), 1.0);
        assert!((sort.reward("2 8 5") - 1.0 / 3.0).abs() < 1e-12);
        assert!((sort.reward("2 5") - 2.0 / 3.0).abs() < 1e-12);

        let rev = p(TaskKind::Rev, "dcba");
        assert_eq!(rev.reward("dcba"), 1.0);
        assert!((rev.reward("dcb") - 0.75).abs() < 1e-12);
        assert!((rev.reward("abcd") - 0.0).abs() < 1e-12);

        let count = p(TaskKind::Count, "3");
        assert_eq!(count.reward("3"), 1.0);
        assert_eq!(count.reward("2"), 0.5);
        assert_eq!(count.reward("x"), 0.0);
    }

    #[test]
    fn samples_are_consistent() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            for kind in TaskKind::ALL {
                let t = sample(kind, &mut rng);
                assert_eq!(t.reward(&t.answer), 1.0, "{t:?}");
            }
        }
    }

    #[test]
    fn corruptions_are_wrong_but_earn_partial_credit() {
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..200 {
            for kind in TaskKind::ALL {
                let t = sample(kind, &mut rng);
                let bad = corrupt(&t, &mut rng);
                let r = t.reward(&bad);
                assert!(r < 1.0, "{t:?} {bad}");
                assert!(
                    r > 0.0 || kind == TaskKind::Sort || kind == TaskKind::Rev,
                    "{t:?} {bad}"
                );
            }
        }
    }

    #[test]
    fn eval_and_train_are_disjoint_and_seeded() {
        let a = PromptSets::new(&TaskKind::ALL, 5, 300, 60).unwrap();
        let b = PromptSets::new(&TaskKind::ALL, 5, 300, 60).unwrap();
        assert_eq!(a.train, b.train);
        let eval: HashSet<_> = a.eval.iter().map(|p| &p.prompt).collect();
        assert!(a.train.iter().all(|p| !eval.contains(&p.prompt)));
        let c = PromptSets::new(&TaskKind::ALL, 6, 300, 60).unwrap();
        assert_ne!(a.train, c.train);
    }
}
