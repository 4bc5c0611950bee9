//! The one key table. The key handler, the `?` overlay, the footer and the README's key
//! table all come from [`BINDINGS`] (a test holds the README to it,
//! `crate::testing::readme_key_table`).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for. Some act on what is open (`Left` moves between pairs in the
/// inspector and between iterations elsewhere); `App::perform` decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    StepStage,
    StepBatch,
    Run,
    Pause,
    RunOrPause,
    ToggleAutoPause,
    EditParams,
    NextView,
    PrevView,
    Dashboard,
    Pairs,
    Log,
    Left,
    Right,
    PrevIteration,
    NextIteration,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Open,
    Sort,
    Tokens,
    NextPair,
    PrevPair,
    Back,
    Resume,
    StopRun,
    Ranking,
    MakeBest,
    MakeWorst,
    MoveUp,
    MoveDown,
    SkipPrompt,
    PrevPrompt,
    HandOff,
    Help,
    Quit,
}

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Everywhere (under any open pair's own bindings).
    Any,
    /// Only while a pair is open in the inspector.
    Inspector,
    /// Only in the Rank view (`rank.ranker = "human"`).
    Ranking,
}

/// The footer shown in a situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footer {
    /// A live run.
    Live,
    /// `selm-tui inspect` (or a finished run).
    ReadOnly,
    /// A pair is open.
    Inspector,
    /// Added to `ReadOnly` for a run that can be resumed.
    Resumable,
    /// Added to `Live` in a viewer attached to a run in another process.
    Attached,
    /// A prompt waits for the researcher's ranking.
    Ranking,
}

/// A key, with Ctrl or without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Plain(KeyCode),
    Ctrl(char),
}

impl Key {
    fn matches(self, event: &KeyEvent) -> bool {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        match self {
            Key::Plain(code) => !ctrl && event.code == code,
            Key::Ctrl(c) => ctrl && event.code == KeyCode::Char(c),
        }
    }
}

/// One row of the key table.
#[derive(Debug)]
pub struct Binding {
    /// The keys as the help and the README write them.
    pub label: &'static str,
    pub help: &'static str,
    pub context: Context,
    pub keys: &'static [(Key, Act)],
    /// Footers that show this row, with the short key text and word.
    pub footer: &'static [(Footer, &'static str, &'static str)],
}

const fn ch(c: char) -> Key {
    Key::Plain(KeyCode::Char(c))
}

const fn code(c: KeyCode) -> Key {
    Key::Plain(c)
}

use Footer::{Inspector as In, Live, Ranking as Rk, ReadOnly as Ro};

pub const BINDINGS: &[Binding] = &[
    Binding {
        label: "s / b",
        help: "step one stage / one update mini-batch",
        context: Context::Any,
        keys: &[(ch('s'), Act::StepStage), (ch('b'), Act::StepBatch)],
        footer: &[(Live, "s", "stage"), (Live, "b", "batch")],
    },
    Binding {
        label: "r / p / space",
        help: "run / pause at a safe point / toggle",
        context: Context::Any,
        keys: &[
            (ch('r'), Act::Run),
            (ch('p'), Act::Pause),
            (ch(' '), Act::RunOrPause),
        ],
        footer: &[(Live, "r", "run"), (Live, "p", "pause")],
    },
    Binding {
        label: "a",
        help: "auto-pause between iterations on/off",
        context: Context::Any,
        keys: &[(ch('a'), Act::ToggleAutoPause)],
        footer: &[(Live, "a", "auto-pause")],
    },
    Binding {
        label: "e",
        help: "edit alpha, beta, lr (next update on)",
        context: Context::Any,
        keys: &[(ch('e'), Act::EditParams)],
        footer: &[(Live, "e", "params")],
    },
    Binding {
        label: "Tab / S-Tab",
        help: "next / previous view (1 2 3 4: jump)",
        context: Context::Any,
        keys: &[
            (code(KeyCode::Tab), Act::NextView),
            (code(KeyCode::BackTab), Act::PrevView),
            (ch('1'), Act::Dashboard),
            (ch('2'), Act::Pairs),
            (ch('3'), Act::Log),
            (ch('4'), Act::Ranking),
        ],
        footer: &[(Live, "Tab", "view"), (Ro, "Tab", "view")],
    },
    Binding {
        label: "← → / h l / [ ]",
        help: "previous / next iteration",
        context: Context::Any,
        keys: &[
            (code(KeyCode::Left), Act::Left),
            (ch('h'), Act::Left),
            (code(KeyCode::Right), Act::Right),
            (ch('l'), Act::Right),
            (ch('['), Act::PrevIteration),
            (ch(']'), Act::NextIteration),
        ],
        footer: &[(Ro, "←→", "iteration")],
    },
    Binding {
        label: "↑ ↓ / k j",
        help: "move / scroll",
        context: Context::Any,
        keys: &[
            (code(KeyCode::Up), Act::Up),
            (ch('k'), Act::Up),
            (code(KeyCode::Down), Act::Down),
            (ch('j'), Act::Down),
        ],
        footer: &[(In, "j/k", "scroll")],
    },
    Binding {
        label: "PgUp PgDn g G",
        help: "page / top / bottom",
        context: Context::Any,
        keys: &[
            (code(KeyCode::PageUp), Act::PageUp),
            (code(KeyCode::PageDown), Act::PageDown),
            (code(KeyCode::Home), Act::Top),
            (ch('g'), Act::Top),
            (code(KeyCode::End), Act::Bottom),
            (ch('G'), Act::Bottom),
        ],
        footer: &[],
    },
    Binding {
        label: "Enter",
        help: "open the selected pair / submit a ranking",
        context: Context::Any,
        keys: &[(code(KeyCode::Enter), Act::Open)],
        footer: &[(Ro, "Enter", "open"), (Rk, "Enter", "submit")],
    },
    Binding {
        label: "+ - / K J",
        help: "rank: make best / worst, move up / down",
        context: Context::Ranking,
        keys: &[
            (ch('+'), Act::MakeBest),
            (ch('='), Act::MakeBest),
            (ch('-'), Act::MakeWorst),
            (ch('K'), Act::MoveUp),
            (ch('J'), Act::MoveDown),
        ],
        footer: &[(Rk, "+/-", "best/worst"), (Rk, "K/J", "move")],
    },
    Binding {
        label: "x / u / H",
        help: "rank: skip / previous prompt / hand off",
        context: Context::Ranking,
        keys: &[
            (ch('x'), Act::SkipPrompt),
            (ch('u'), Act::PrevPrompt),
            (ch('H'), Act::HandOff),
        ],
        footer: &[(Rk, "x", "skip"), (Rk, "u", "back"), (Rk, "H", "hand off")],
    },
    Binding {
        label: "o",
        help: "sort pairs: gap, margin, prompt order",
        context: Context::Any,
        keys: &[(ch('o'), Act::Sort)],
        footer: &[(Ro, "o", "sort")],
    },
    Binding {
        label: "t",
        help: "token log-ratio view on/off (pair)",
        context: Context::Inspector,
        keys: &[(ch('t'), Act::Tokens)],
        footer: &[(In, "t", "tokens")],
    },
    Binding {
        label: "n N",
        help: "next / previous pair (pair)",
        context: Context::Inspector,
        keys: &[(ch('n'), Act::NextPair), (ch('N'), Act::PrevPair)],
        footer: &[(In, "n/N", "pair")],
    },
    Binding {
        label: "Esc / Backspace",
        help: "back / close",
        context: Context::Any,
        keys: &[
            (code(KeyCode::Esc), Act::Back),
            (code(KeyCode::Backspace), Act::Back),
        ],
        footer: &[(In, "Esc", "back")],
    },
    Binding {
        label: "R",
        help: "resume this run (inspect, unfinished run)",
        context: Context::Any,
        keys: &[(ch('R'), Act::Resume)],
        footer: &[(Footer::Resumable, "R", "resume")],
    },
    Binding {
        label: "?",
        help: "this help",
        context: Context::Any,
        keys: &[(ch('?'), Act::Help)],
        footer: &[
            (Live, "?", "help"),
            (Ro, "?", "help"),
            (In, "?", "help"),
            (Rk, "?", "help"),
        ],
    },
    Binding {
        label: "q Ctrl-C / S",
        help: "quit (again: leave now) / attach: stop run",
        context: Context::Any,
        keys: &[
            (ch('q'), Act::Quit),
            (Key::Ctrl('c'), Act::Quit),
            (ch('S'), Act::StopRun),
        ],
        footer: &[
            (Footer::Attached, "S", "stop run"),
            (Live, "q", "quit"),
            (Ro, "q", "quit"),
            (In, "q", "quit"),
            (Rk, "q", "quit"),
        ],
    },
];

/// The action `event` is bound to: the bindings of `local` (the open inspector, the Rank
/// view) first, then those that apply everywhere.
pub fn lookup(event: &KeyEvent, local: Option<Context>) -> Option<Act> {
    let find = |context: Context| {
        BINDINGS
            .iter()
            .filter(|b| b.context == context)
            .flat_map(|b| b.keys.iter())
            .find(|(key, _)| key.matches(event))
            .map(|(_, act)| *act)
    };
    local.and_then(find).or_else(|| find(Context::Any))
}

/// The footer's (key, word) hints for `footer`, in table order.
pub fn footer_hints(footer: Footer) -> impl Iterator<Item = (&'static str, &'static str)> {
    BINDINGS
        .iter()
        .flat_map(|b| b.footer.iter())
        .filter(move |(f, _, _)| *f == footer)
        .map(|(_, key, word)| (*key, *word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_in_one_context() {
        for context in [Context::Any, Context::Inspector, Context::Ranking] {
            let keys: Vec<Key> = BINDINGS
                .iter()
                .filter(|b| b.context == context)
                .flat_map(|b| b.keys.iter().map(|(k, _)| *k))
                .collect();
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[i + 1..].contains(k), "{k:?} bound twice");
            }
        }
    }

    #[test]
    fn the_inspector_overrides_and_falls_through() {
        let n = KeyEvent::from(KeyCode::Char('n'));
        let inspector = Some(Context::Inspector);
        assert_eq!(lookup(&n, inspector), Some(Act::NextPair));
        assert_eq!(lookup(&n, None), None);
        let q = KeyEvent::from(KeyCode::Char('q'));
        assert_eq!(lookup(&q, inspector), Some(Act::Quit));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(lookup(&ctrl_c, None), Some(Act::Quit));
        assert_eq!(lookup(&KeyEvent::from(KeyCode::Char('c')), None), None);
        let plus = KeyEvent::from(KeyCode::Char('+'));
        assert_eq!(lookup(&plus, Some(Context::Ranking)), Some(Act::MakeBest));
        assert_eq!(lookup(&plus, inspector), None);
    }
}
