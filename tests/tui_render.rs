//! The inbox's `render`, drawn into ratatui's `TestBackend` and compared with
//! reviewed snapshots (tests/snapshots). Sizes: 120x40, 80x24, 40x12, and every
//! size from 1x1 to 20x5 must draw without panicking.

mod common;

use common::fixtures::{chars, every_type, key, now, run, select, state_with, task};
use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;
use signoff::domain::{Event, Status, TaskType, WaitingReason};
use signoff::tui::action::Action;
use signoff::tui::state::State;
use signoff::tui::view::render;

const SIZES: [(u16, u16); 3] = [(120, 40), (80, 24), (40, 12)];

fn draw(state: &mut State, width: u16, height: u16) -> String {
    run(state, vec![Action::Resize { width, height }]);
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| render(state, frame)).expect("draw");
    terminal.backend().to_string()
}

/// The payload and history the inbox loads for the selected task.
fn detail(intent_id: &str) -> Action {
    let event = |seq: u64, event_type: &str, status: Status, minutes: i64| Event {
        intent_id: intent_id.into(),
        seq,
        event_type: event_type.into(),
        status,
        waiting_reason: (status == Status::Waiting).then_some(WaitingReason::WaitingForHuman),
        actor: "agent://acme/deployer".into(),
        at: now().plus_seconds(-60 * minutes),
        details: json!({}),
    };
    let payload = json!({"service": "api", "version": "2.3.0", "replicas": 3});
    let events = vec![
        event(1, "intent.created", Status::Created, 42),
        event(2, "intent.submitted", Status::Submitted, 42),
        event(3, "intent.human_task_assigned", Status::Waiting, 42),
    ];
    Action::DetailLoaded {
        intent_id: intent_id.into(),
        result: Ok((payload, events)),
    }
}

fn inbox() -> State {
    let mut state = state_with(every_type(), 120, 40);
    run(&mut state, vec![detail("t-approval")]);
    state
}

#[test]
fn the_inbox_at_three_sizes() {
    for (width, height) in SIZES {
        let mut state = inbox();
        insta::assert_snapshot!(
            format!("inbox_{width}x{height}"),
            draw(&mut state, width, height)
        );
    }
}

#[test]
fn the_zoomed_detail_pane_at_three_sizes() {
    for (width, height) in SIZES {
        let mut state = inbox();
        run(&mut state, vec![key(KeyCode::Char('z'))]);
        insta::assert_snapshot!(
            format!("detail_{width}x{height}"),
            draw(&mut state, width, height)
        );
    }
}

#[test]
fn every_task_type_dialog_at_three_sizes() {
    for task in every_type() {
        for (width, height) in SIZES {
            let mut state = inbox();
            select(&mut state, &task.intent_id);
            run(&mut state, vec![key(KeyCode::Enter)]);
            let name = format!(
                "dialog_{}_{width}x{height}",
                task.human_task.task_type.as_str()
            );
            insta::assert_snapshot!(name, draw(&mut state, width, height));
        }
    }
}

#[test]
fn dialogs_show_insert_mode_and_inline_errors() {
    let mut state = inbox();
    select(&mut state, "t-form");
    run(
        &mut state,
        vec![
            key(KeyCode::Enter),
            key(KeyCode::Enter),
            key(KeyCode::Char('i')),
        ],
    );
    run(&mut state, chars("0"));
    insta::assert_snapshot!("dialog_form_typing_with_error", draw(&mut state, 120, 40));
}

#[test]
fn overlays_and_the_offline_banner() {
    let mut state = inbox();
    run(&mut state, vec![key(KeyCode::Char('?'))]);
    insta::assert_snapshot!("help_120x40", draw(&mut state, 120, 40));

    let mut state = inbox();
    run(&mut state, vec![key(KeyCode::Char(':'))]);
    run(&mut state, chars("so"));
    insta::assert_snapshot!("palette_80x24", draw(&mut state, 80, 24));

    let mut state = inbox();
    run(
        &mut state,
        vec![Action::Disconnected {
            error: "connection refused".into(),
            retry_at: now().plus_seconds(4),
        }],
    );
    insta::assert_snapshot!("offline_80x24", draw(&mut state, 80, 24));

    let mut state = inbox();
    run(&mut state, vec![key(KeyCode::Char('/'))]);
    run(&mut state, chars("type:review nonsense:x"));
    insta::assert_snapshot!("filter_with_error_80x24", draw(&mut state, 80, 24));
}

#[test]
fn tiny_terminals_never_panic() {
    for width in 1..=20 {
        for height in 1..=5 {
            let mut state = inbox();
            let text = draw(&mut state, width, height);
            assert_eq!(
                text.lines().count(),
                usize::from(height),
                "{width}x{height}"
            );
        }
    }
    let mut state = inbox();
    insta::assert_snapshot!("too_small_20x5", draw(&mut state, 20, 5));
    // Dialogs and overlays on a small screen too.
    let mut state = inbox();
    run(&mut state, vec![key(KeyCode::Enter)]);
    for (width, height) in [(30, 8), (31, 9), (35, 10)] {
        draw(&mut state, width, height);
    }
}

#[test]
fn wide_characters_line_up() {
    let mut cjk = task(
        "t-cjk",
        TaskType::Approval,
        "本番環境へのデプロイを承認しますか 🚀🔥 ok",
        3,
    );
    cjk.from_agent = "agent://東京/デプロイ".into();
    let mut state = state_with(
        vec![
            cjk,
            task("t-ascii", TaskType::Review, "Plain ASCII title", 1),
        ],
        80,
        24,
    );
    let text = draw(&mut state, 80, 24);
    insta::assert_snapshot!("cjk_emoji_80x24", text);
}

#[test]
fn escape_sequences_from_agents_are_rendered_harmlessly() {
    let mut hostile = task(
        "t-evil",
        TaskType::Approval,
        "Approve\x1b]0;pwned\x07 me",
        3,
    );
    hostile.human_task.description = Some("desc \x1b[2J\x1b[31mred\u{9b}31m".into());
    let mut state = state_with(vec![hostile], 80, 24);
    let payload = json!({"note": "\x1b]0;pwned\x07", "bell": "\x07"});
    run(
        &mut state,
        vec![Action::DetailLoaded {
            intent_id: "t-evil".into(),
            result: Ok((payload, vec![])),
        }],
    );
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    run(
        &mut state,
        vec![Action::Resize {
            width: 80,
            height: 24,
        }],
    );
    terminal.draw(|frame| render(&state, frame)).unwrap();
    let buffer = terminal.backend().buffer();
    for cell in buffer.content() {
        assert!(
            !cell.symbol().chars().any(|c| c.is_control()),
            "a control character reached the screen: {:?}",
            cell.symbol()
        );
    }
    let text = terminal.backend().to_string();
    assert!(text.contains("Approve]0;pwned me"), "{text}");
    insta::assert_snapshot!("escape_payload_80x24", text);
}

#[test]
fn a_quorum_task_shows_its_votes_in_the_detail_pane() {
    let mut quorum = task(
        "t-quorum",
        TaskType::Approval,
        "Merge the schema change?",
        5,
    );
    quorum.human_task.quorum = Some(2);
    quorum.assignees = vec!["alice@example.com".into(), "cat@example.com".into()];
    quorum.votes = vec![signoff::domain::task::Vote {
        voter: "ann@example.com".into(),
        outcome: "approved".into(),
        comment: None,
        at: now(),
    }];
    let mut state = state_with(vec![quorum], 120, 40);
    run(&mut state, vec![detail("t-quorum")]);
    let screen = draw(&mut state, 120, 40);
    assert!(
        screen.contains("quorum    1 of 2 approvals · ann@example.com"),
        "{screen}"
    );
}
