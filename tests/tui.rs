//! The TUI without a terminal: key handling and event folding as pure functions, and
//! snapshots of the main views drawn on ratatui's TestBackend.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use selm_tui::engine::{
    Command, Event, Level, LiveParams, RankQuery, Stage, StageSummary, Verdict,
};
use selm_tui::run::records::{Candidate, DatasetLabel};
use selm_tui::tui::app::{Action, App, EngineState, Popup, View};
use selm_tui::tui::bench::synthetic_app;
use selm_tui::tui::panels::pair_list::PairSort;
use selm_tui::tui::view;

const PARAMS: LiveParams = LiveParams {
    alpha: 0.001,
    beta: 0.1,
    lr: 1e-4,
};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::from(code)
}

fn press(app: &mut App, codes: &[KeyCode]) -> Vec<Action> {
    codes.iter().flat_map(|c| app.handle_key(key(*c))).collect()
}

fn paused() -> App {
    let mut app = App::new(PARAMS, false);
    app.run.state = EngineState::Paused;
    app
}

fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(f, app)).unwrap();
    t
}

fn screen(app: &App, w: u16, h: u16) -> String {
    render(app, w, h).backend().to_string()
}

#[test]
fn control_keys_send_engine_commands() {
    let mut app = paused();
    let sent = |a: Vec<Action>| -> Vec<Command> {
        a.into_iter()
            .map(|a| match a {
                Action::Send(c) => c,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(
        sent(press(&mut app, &[KeyCode::Char('s')])),
        [Command::StepStage]
    );
    assert_eq!(
        sent(press(&mut app, &[KeyCode::Char('b')])),
        [Command::StepBatch]
    );
    assert_eq!(sent(press(&mut app, &[KeyCode::Char('r')])), [Command::Run]);
    assert_eq!(
        sent(press(&mut app, &[KeyCode::Char('p')])),
        [Command::Pause]
    );
    // Space toggles on the engine's reported state.
    assert_eq!(sent(press(&mut app, &[KeyCode::Char(' ')])), [Command::Run]);
    app.apply(Event::Resumed);
    assert_eq!(app.run.state, EngineState::Running);
    assert_eq!(
        sent(press(&mut app, &[KeyCode::Char(' ')])),
        [Command::Pause]
    );
    assert_eq!(
        sent(press(&mut app, &[KeyCode::Char('a')])),
        [Command::SetAutoPause(true)]
    );
    assert!(app.run.auto_pause);
}

#[test]
fn quit_asks_the_engine_first_and_leaves_on_the_second_press() {
    let mut app = paused();
    assert_eq!(
        press(&mut app, &[KeyCode::Char('q')]),
        [Action::Send(Command::Quit)]
    );
    assert_eq!(app.run.state, EngineState::Quitting);
    // Engine events while quitting do not undo the quit.
    app.apply(Event::Paused);
    assert_eq!(app.run.state, EngineState::Quitting);
    // No more commands once quitting; a second q leaves at once.
    assert!(press(&mut app, &[KeyCode::Char('s')]).is_empty());
    assert_eq!(press(&mut app, &[KeyCode::Char('q')]), [Action::Exit]);
    let mut done = paused();
    done.apply(Event::Finished { completed: true });
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(done.handle_key(ctrl_c), [Action::Exit]);
}

#[test]
fn an_attached_viewer_detaches_on_q_and_stops_the_run_only_when_asked_twice() {
    let mut app = synthetic_app(3, 5);
    // Not attached: S does nothing.
    app.run.state = EngineState::Paused;
    assert!(press(&mut app, &[KeyCode::Char('S')]).is_empty());
    assert_eq!(app.popup, None);
    app.attach(4242);
    app.apply(Event::Paused);
    // S asks; anything but y cancels; y sends Quit.
    assert!(press(&mut app, &[KeyCode::Char('S')]).is_empty());
    assert_eq!(app.popup, Some(Popup::ConfirmStop));
    insta::assert_snapshot!("attached_stop_80x24", render(&app, 80, 24).backend());
    assert!(press(&mut app, &[KeyCode::Char('n')]).is_empty());
    assert_eq!(
        (app.popup.clone(), app.run.state),
        (None, EngineState::Paused)
    );
    assert_eq!(
        press(&mut app, &[KeyCode::Char('S'), KeyCode::Char('y')]),
        [Action::Send(Command::Quit)]
    );
    assert_eq!(app.run.state, EngineState::Quitting);
    // q leaves at once, whatever the run does.
    let mut viewer = synthetic_app(3, 5);
    viewer.attach(4242);
    viewer.apply(Event::Resumed);
    assert_eq!(press(&mut viewer, &[KeyCode::Char('q')]), [Action::Exit]);
    // A step both in the files and live shows once; auto-pause follows the run.
    let steps = viewer.loss.steps.len();
    let last = selm_tui::run::records::TrainRecord {
        iteration: viewer.loss.steps.last().unwrap().iteration,
        step: viewer.loss.steps.last().unwrap().step as usize,
        batch: 1,
        metrics: selm_tui::selm::SelmMetrics {
            loss: viewer.loss.steps.last().unwrap().loss,
            ..Default::default()
        },
        grad_norm: 1.0,
        lr: 1e-4,
    };
    viewer.apply(Event::Metrics(last.clone()));
    assert_eq!(viewer.loss.steps.len(), steps);
    viewer.apply(Event::Metrics(selm_tui::run::records::TrainRecord {
        step: last.step + 1,
        ..last
    }));
    assert_eq!(viewer.loss.steps.len(), steps + 1);
    viewer.apply(Event::AutoPause(true));
    assert!(viewer.run.auto_pause);
}

#[test]
fn read_only_sends_nothing() {
    let mut app = synthetic_app(3, 5);
    app.run.state = EngineState::ReadOnly;
    for c in ['s', 'b', 'r', 'p', ' ', 'a', 'e'] {
        assert!(press(&mut app, &[KeyCode::Char(c)]).is_empty(), "{c}");
    }
    assert_eq!(app.popup, None);
    assert_eq!(press(&mut app, &[KeyCode::Char('q')]), [Action::Exit]);
}

#[test]
fn params_popup_validates_and_names_the_field() {
    let mut app = paused();
    press(&mut app, &[KeyCode::Char('e')]);
    assert!(matches!(app.popup, Some(Popup::Params(_))));
    // Clear alpha ("0.001") and type a negative value.
    let mut keys = vec![KeyCode::Backspace; 5];
    keys.extend([KeyCode::Char('-'), KeyCode::Char('1'), KeyCode::Enter]);
    assert!(press(&mut app, &keys).is_empty());
    let Some(Popup::Params(form)) = &app.popup else {
        panic!("the popup stays open on an error")
    };
    assert_eq!(form.error.as_deref(), Some("alpha must be >= 0, got -1"));
    // Fix alpha, move to lr, make it unparsable.
    let mut keys = vec![KeyCode::Backspace; 2];
    keys.extend([KeyCode::Char('0'), KeyCode::Char('.'), KeyCode::Char('5')]);
    keys.extend([
        KeyCode::Tab,
        KeyCode::Tab,
        KeyCode::Char('.'),
        KeyCode::Enter,
    ]);
    assert!(press(&mut app, &keys).is_empty());
    let Some(Popup::Params(form)) = &app.popup else {
        panic!()
    };
    assert_eq!(form.error.as_deref(), Some("lr: `0.0001.` is not a number"));
    let actions = press(&mut app, &[KeyCode::Backspace, KeyCode::Enter]);
    assert_eq!(
        actions,
        [Action::Send(Command::SetParams {
            alpha: Some(0.5),
            beta: Some(0.1),
            lr: Some(1e-4),
            origin: selm_tui::engine::Origin::Tui,
        })]
    );
    assert_eq!(app.popup, None);
    // The displayed values change only when the engine confirms.
    assert_eq!(app.run.params.alpha, 0.001);
    app.apply(Event::ParamsChanged(LiveParams {
        alpha: 0.5,
        ..PARAMS
    }));
    assert_eq!(app.run.params.alpha, 0.5);
    // Esc cancels without sending.
    press(&mut app, &[KeyCode::Char('e')]);
    assert!(press(&mut app, &[KeyCode::Char('9'), KeyCode::Esc]).is_empty());
    assert_eq!(app.popup, None);
}

#[test]
fn events_drive_the_pipeline_bar() {
    let mut app = App::new(PARAMS, false);
    assert_eq!(app.run.state, EngineState::Loading);
    let mut it0 = synthetic_app(1, 1).evals.evals[0].clone();
    it0.iteration = 0;
    app.apply(Event::Iteration(it0));
    assert_eq!(
        app.run.state,
        EngineState::Paused,
        "loading ends with the first eval"
    );
    app.apply(Event::StageStarted {
        iteration: 1,
        stage: Stage::Generate,
    });
    app.apply(Event::Progress {
        iteration: 1,
        stage: Stage::Generate,
        done: 3,
        total: 7,
    });
    assert_eq!(app.pipeline.stage, Some(Stage::Generate));
    assert_eq!(
        (app.pipeline.stages[1].done, app.pipeline.stages[1].total),
        (3, 7)
    );
    app.apply(Event::StageFinished {
        iteration: 1,
        stage: Stage::Generate,
        summary: StageSummary::Generate { responses: 9 },
        seconds: 1.5,
    });
    assert!(app.pipeline.stages[1].finished);
    assert!(app.log.lines.back().unwrap().text.contains("9 responses"));
    // A new iteration clears the bar.
    app.apply(Event::StageStarted {
        iteration: 2,
        stage: Stage::SamplePrompts,
    });
    assert!(!app.pipeline.stages[1].finished);
    assert_eq!(
        app.selected_iteration, 2,
        "the selection follows the engine"
    );
}

#[test]
fn pairs_sort_browse_and_open() {
    let mut app = synthetic_app(3, 4);
    app.run.state = EngineState::Paused;
    press(&mut app, &[KeyCode::Tab]);
    assert_eq!(app.view, View::Pairs);
    assert_eq!(app.selected_iteration, 3);
    assert_eq!(app.pairs.sort, PairSort::ScoreGap);
    let gaps: Vec<f64> = app
        .pairs
        .sorted(app.selected_iteration)
        .iter()
        .map(|(_, p, _)| p.chosen_score - p.rejected_score)
        .collect();
    assert!(gaps.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(gaps[0], 1.0);
    press(&mut app, &[KeyCode::Char('o')]);
    assert_eq!(app.pairs.sort, PairSort::RewardMargin);
    let margins: Vec<f64> = app
        .pairs
        .sorted(app.selected_iteration)
        .iter()
        .map(|(_, _, l)| l.unwrap().reward_margin())
        .collect();
    assert!(margins.windows(2).all(|w| w[0] >= w[1]));
    // Browse back to iteration 2 and 1, not below the starting model's 0, then forward.
    press(&mut app, &[KeyCode::Left, KeyCode::Char('h')]);
    assert_eq!(app.selected_iteration, 1);
    assert!(!app.follow);
    press(&mut app, &[KeyCode::Left, KeyCode::Left, KeyCode::Left]);
    assert_eq!(app.selected_iteration, 0);
    press(
        &mut app,
        &[KeyCode::Char(']'), KeyCode::Char(']'), KeyCode::Char(']')],
    );
    assert_eq!(app.selected_iteration, 3);
    assert!(app.follow);
    // Move, open, step to the next pair, scroll, back.
    press(
        &mut app,
        &[KeyCode::Down, KeyCode::Char('j'), KeyCode::Enter],
    );
    assert_eq!(app.inspector.open, Some(2));
    press(
        &mut app,
        &[KeyCode::Char('n'), KeyCode::Down, KeyCode::Down],
    );
    assert_eq!((app.inspector.open, app.inspector.scroll), (Some(3), 2));
    press(&mut app, &[KeyCode::Char('t')]);
    assert!(!app.inspector.token_view);
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!((app.inspector.open, app.view), (None, View::Pairs));
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.view, View::Dashboard);
    press(&mut app, &[KeyCode::Char('?')]);
    assert_eq!(app.popup, Some(Popup::Help));
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.popup, None);
}

#[test]
fn an_engine_error_shows_until_the_engine_runs_again() {
    let mut app = paused();
    app.apply(Event::Error(
        "iteration 1 stage `rank`: ranker `x` exited".into(),
    ));
    // The status line (second row) carries it; the log keeps it after.
    let status = |app: &App| screen(app, 100, 30).lines().nth(1).unwrap().to_string();
    assert!(
        status(&app).contains("error: iteration 1 stage `rank`"),
        "{}",
        status(&app)
    );
    assert_eq!(app.log.lines.back().unwrap().level, Level::Error);
    app.apply(Event::Resumed);
    assert!(status(&app).contains("α 0.001"), "{}", status(&app));
}

#[test]
fn a_wait_on_a_server_shows_what_and_how_long_until_the_engine_moves_on() {
    let mut app = paused();
    app.apply(Event::StageStarted {
        iteration: 1,
        stage: Stage::Generate,
    });
    app.apply(Event::Waiting(selm_tui::engine::Wait {
        what: "server starting".into(),
        elapsed_s: 12.4,
        limit_s: Some(600.0),
    }));
    let s = screen(&app, 120, 40);
    assert!(s.contains("server starting: 12 s of 600"), "{s}");
    assert!(s.contains("wait 12 s"), "{s}");
    app.apply(Event::Progress {
        iteration: 1,
        stage: Stage::Generate,
        done: 1,
        total: 4,
    });
    let s = screen(&app, 120, 40);
    assert!(!s.contains("server starting"), "{s}");
    assert!(s.contains("1/4"), "{s}");
}

#[test]
fn too_small_a_terminal_says_so() {
    let app = synthetic_app(3, 12);
    let text = screen(&app, 50, 15);
    assert!(text.contains("terminal too small: 50x15"), "{text}");
}

#[test]
fn every_view_fits_80x24_and_200x50() {
    let mut app = synthetic_app(3, 12);
    app.run.state = EngineState::Paused;
    for (w, h) in [(80, 24), (200, 50), (60, 20)] {
        for setup in [
            |_: &mut App| {},
            |a: &mut App| a.view = View::Pairs,
            |a: &mut App| {
                a.view = View::Pairs;
                a.inspector.open(0);
            },
            |a: &mut App| a.view = View::Log,
            |a: &mut App| a.popup = Some(Popup::Help),
        ] {
            let mut a = app.clone();
            setup(&mut a);
            let text = screen(&a, w, h);
            // The help lists every key even at the minimum size; the rest shows the tabs.
            let needle = match a.popup {
                Some(_) => "quit (again: leave now)",
                None => "Dashboard",
            };
            assert!(text.contains(needle), "{w}x{h}\n{text}");
            assert!(!text.contains("too small"), "{w}x{h}\n{text}");
        }
    }
    app.view = View::Dashboard;
    let text = screen(&app, 200, 50);
    for needle in [
        "sample prompts",
        "sync + eval",
        "loss (last",
        "optimism",
        "rewards/margins",
        "held-out rewards, iter 3",
        "high-reward frac",
    ] {
        assert!(text.contains(needle), "{needle}\n{text}");
    }
}

#[test]
fn snapshot_dashboard_80x24() {
    let mut app = synthetic_app(3, 12);
    app.run.state = EngineState::Running;
    app.apply(Event::StageStarted {
        iteration: 3,
        stage: Stage::Update,
    });
    app.apply(Event::Progress {
        iteration: 3,
        stage: Stage::Update,
        done: 5,
        total: 12,
    });
    app.elapsed_s = 754.0;
    insta::assert_snapshot!(render(&app, 80, 24).backend());
}

#[test]
fn snapshot_dashboard_120x40() {
    let mut app = synthetic_app(3, 12);
    app.run.state = EngineState::Paused;
    insta::assert_snapshot!(render(&app, 120, 40).backend());
}

#[test]
fn snapshot_pairs_and_inspector() {
    let mut app = synthetic_app(3, 12);
    app.run.state = EngineState::Paused;
    app.view = View::Pairs;
    insta::assert_snapshot!("pairs_100x30", render(&app, 100, 30).backend());
    app.inspector.open(1);
    insta::assert_snapshot!("pair_detail_100x30", render(&app, 100, 30).backend());
}

#[test]
fn snapshot_popups() {
    let mut app = synthetic_app(3, 12);
    app.run.state = EngineState::Paused;
    app.popup = Some(Popup::Help);
    insta::assert_snapshot!("help_80x24", render(&app, 80, 24).backend());
    app.popup = None;
    press(
        &mut app,
        &[
            KeyCode::Char('e'),
            KeyCode::Char('x'),
            KeyCode::Char('e'),
            KeyCode::Enter,
        ],
    );
    insta::assert_snapshot!("params_error_80x24", render(&app, 80, 24).backend());
}

#[test]
fn token_view_colors_by_log_ratio() {
    let mut app = synthetic_app(1, 2);
    app.view = View::Pairs;
    app.pairs.sort = PairSort::Prompt;
    app.inspector.open(0);
    let t = render(&app, 100, 30);
    let buf = t.backend().buffer();
    // synthetic ratios per token i: policy -1 - 0.3 (i % 3), reference -1.1 - 0.2 (i % 4);
    // token 0 ("a") is +0.1 -> light green, token 5 ("f") is -0.3 -> light red.
    let row = (0..30)
        .find(|&y| {
            (0..100)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .contains("abcdefghijk")
        })
        .expect("the chosen response's tokens");
    let x0 = (0..100).find(|&x| buf[(x, row)].symbol() == "a").unwrap();
    assert_eq!(
        buf[(x0, row)].fg,
        ratatui::style::Color::LightGreen,
        "a: +0.1"
    );
    assert_eq!(
        buf[(x0 + 5, row)].fg,
        ratatui::style::Color::LightRed,
        "f: -0.3"
    );
}

#[test]
fn readme_key_table_matches_the_bindings() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let table = selm_tui::testing::readme_key_table();
    assert!(
        readme.contains(&table),
        "README.md's key table must read:\n{table}"
    );
}

/// A question about a prompt with three samples, a dataset response and y_ref.
fn rank_query() -> RankQuery {
    let cand = |text: &str, is_reference: bool, dataset: Option<DatasetLabel>| Candidate {
        text: text.into(),
        tokens: vec![],
        is_reference,
        score: None,
        dataset,
        reference_logps: None,
    };
    RankQuery {
        iteration: 2,
        index: 3,
        total: 8,
        prompt: "What is the capital of France?".into(),
        candidates: vec![
            cand("Paris.", false, None),
            cand("It is Lyon, I think.", false, None),
            cand("The capital of France is Paris, on the Seine.", false, None),
            cand("Paris is the capital.", false, Some(DatasetLabel::Chosen)),
            cand("France.", true, None),
        ],
    }
}

fn sent(actions: Vec<Action>) -> Vec<Command> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::Send(c) => c,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn ranking_keys_build_an_order_and_send_verdicts() {
    let mut app = paused();
    assert!(
        !app.views().contains(&View::Rank),
        "no Rank tab before a question"
    );
    app.apply(Event::RankQuery(rank_query()));
    assert_eq!(app.view, View::Rank, "a question opens the Rank view");
    assert!(app.ranking());
    // Highlight candidate 3 (index 2) and make it best; make y_ref (now last) worst by
    // moving candidate 1 (Paris.) down once.
    press(
        &mut app,
        &[KeyCode::Down, KeyCode::Down, KeyCode::Char('+')],
    );
    assert_eq!(app.desk.order, [2, 0, 1, 3, 4]);
    press(&mut app, &[KeyCode::Down, KeyCode::Char('J')]);
    assert_eq!(app.desk.order, [2, 1, 0, 3, 4]);
    press(&mut app, &[KeyCode::Up, KeyCode::Char('-')]);
    assert_eq!(app.desk.order, [2, 0, 3, 4, 1]);
    press(&mut app, &[KeyCode::Char('K')]);
    assert_eq!(app.desk.order, [2, 0, 3, 1, 4]);
    insta::assert_snapshot!("rank_80x24", render(&app, 80, 24).backend());
    assert_eq!(
        sent(press(&mut app, &[KeyCode::Enter])),
        [Command::Rank(Verdict::Order {
            index: 3,
            order: vec![2, 0, 3, 1, 4]
        })]
    );
    assert!(
        !app.ranking(),
        "answered: nothing is asked until the engine asks again"
    );
    assert!(sent(press(&mut app, &[KeyCode::Enter])).is_empty());
    for (code, verdict) in [
        ('x', Verdict::Skip { index: 3 }),
        ('u', Verdict::Back),
        ('H', Verdict::HandOff),
    ] {
        app.apply(Event::RankQuery(rank_query()));
        assert_eq!(
            sent(press(&mut app, &[KeyCode::Char(code)])),
            [Command::Rank(verdict)]
        );
    }
    // Elsewhere the ranking keys do nothing, and the view keys reach the Rank tab.
    app.apply(Event::RankQuery(rank_query()));
    press(&mut app, &[KeyCode::Char('1')]);
    assert!(sent(press(&mut app, &[KeyCode::Char('x'), KeyCode::Char('+')])).is_empty());
    press(&mut app, &[KeyCode::Char('4')]);
    assert_eq!(app.view, View::Rank);
    // The rank stage's end closes the question.
    app.apply(Event::StageFinished {
        iteration: 2,
        stage: Stage::Rank,
        summary: StageSummary::Rank { mean_score: 0.5 },
        seconds: 30.0,
    });
    assert!(!app.ranking());
    assert_eq!(app.view, View::Dashboard, "back to the dashboard");
    press(&mut app, &[KeyCode::Char('4')]);
    let text = screen(&app, 80, 24);
    assert!(text.contains("No prompt waits for a ranking"), "{text}");
}

#[test]
fn a_question_asked_again_starts_from_its_earlier_order() {
    let mut app = paused();
    let mut q = rank_query();
    for (c, s) in q.candidates.iter_mut().zip([0.25, 0.0, 1.0, 0.5, 0.75]) {
        c.score = Some(s);
    }
    app.apply(Event::RankQuery(q));
    assert_eq!(app.desk.order, [2, 4, 3, 0, 1]);
    for (w, h) in [(60, 20), (200, 50)] {
        let text = screen(&app, w, h);
        assert!(
            text.contains("prompt 4 of 8") && text.contains("best"),
            "{w}x{h}\n{text}"
        );
    }
}
