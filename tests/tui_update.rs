//! The inbox's `update` function, driven action by action with no terminal:
//! navigation, filtering, every task type's dialog, the undo window, server
//! refusals, and going offline and back.

mod common;

use common::fixtures::{chars, ctrl, every_type, key, now, run, select, state_with, task};
use crossterm::event::KeyCode;
use serde_json::{Value, json};
use signoff::client::ClientError;
use signoff::domain::{TaskReminder, TaskRemoval, TaskStreamItem, TaskType, TaskUpsert};
use signoff::tui::action::{Action, Effect};
use signoff::tui::dialog::Part;
use signoff::tui::inbox::{SortKey, View};
use signoff::tui::state::{Connection, Mode, State};

fn tick(state: &mut State, seconds: i64) -> Vec<Effect> {
    let later = state.now.plus_seconds(seconds);
    run(state, vec![Action::Tick(later)])
}

fn submitted(effects: &[Effect]) -> Vec<(String, Value)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Submit { intent_id, body } => Some((intent_id.clone(), body.clone())),
            _ => None,
        })
        .collect()
}

/// Lets the undo window pass and returns what was sent.
fn sent_after_undo_window(state: &mut State) -> Vec<(String, Value)> {
    assert!(
        submitted(&tick(state, 1)).is_empty(),
        "nothing is sent inside the undo window"
    );
    submitted(&tick(state, 5))
}

fn dialog(state: &State) -> &signoff::tui::dialog::Dialog {
    match &state.mode {
        Mode::Dialog(dialog) => dialog,
        other => panic!("expected a dialog, got {other:?}"),
    }
}

#[test]
fn vim_keys_and_arrows_move_and_the_selection_follows_its_task() {
    let mut state = state_with(every_type(), 120, 40);
    assert_eq!(
        state.selected.as_deref(),
        Some("t-approval"),
        "oldest first"
    );
    run(
        &mut state,
        vec![key(KeyCode::Char('j')), key(KeyCode::Down)],
    );
    assert_eq!(state.selected.as_deref(), Some("t-form"));
    run(&mut state, vec![key(KeyCode::Char('G'))]);
    assert_eq!(state.selected.as_deref(), Some("t-manual"));
    run(&mut state, chars("gg"));
    assert_eq!(state.selected.as_deref(), Some("t-approval"));
    run(&mut state, vec![ctrl('d')]);
    assert!(state.selected_index > 0);
    run(&mut state, vec![key(KeyCode::PageUp)]);
    assert_eq!(state.selected_index, 0);
    run(&mut state, vec![key(KeyCode::Char('k'))]);
    assert_eq!(state.selected_index, 0, "stays at the top");

    // A new, older task sorts above: the selection stays on the same task.
    select(&mut state, "t-form");
    let older = task("t-older", TaskType::Approval, "Older", 90);
    run(
        &mut state,
        vec![Action::Stream(TaskStreamItem::Upserted(TaskUpsert {
            cursor: 11,
            reason: "assigned".into(),
            task: older,
        }))],
    );
    assert_eq!(state.selected.as_deref(), Some("t-form"));
    assert_eq!(state.inbox.visible()[0], "t-older");
}

#[test]
fn the_list_scrolls_to_keep_the_selection_on_screen() {
    let tasks: Vec<_> = (0..100)
        .map(|i| task(&format!("t{i:03}"), TaskType::Approval, "Task", 200 - i))
        .collect();
    let mut state = state_with(tasks, 80, 24);
    run(&mut state, vec![key(KeyCode::Char('G'))]);
    assert_eq!(state.selected_index, 99);
    assert!(state.offset > 0 && state.offset <= 99);
    run(&mut state, vec![key(KeyCode::Home)]);
    assert_eq!(state.offset, 0);
}

#[test]
fn the_filter_applies_live_and_esc_clears_it() {
    let mut state = state_with(every_type(), 120, 40);
    run(&mut state, vec![key(KeyCode::Char('/'))]);
    assert!(matches!(state.mode, Mode::Filter { .. }));
    run(&mut state, chars("type:rev"));
    assert_eq!(state.inbox.visible(), ["t-review"]);
    assert_eq!(state.selected.as_deref(), Some("t-review"));
    run(&mut state, vec![key(KeyCode::Enter)]);
    assert!(matches!(state.mode, Mode::Normal));
    assert_eq!(state.inbox.visible().len(), 1, "enter keeps the filter");
    run(&mut state, vec![key(KeyCode::Esc)]);
    assert_eq!(state.inbox.visible().len(), 8, "esc clears it");

    run(&mut state, vec![key(KeyCode::Char('/'))]);
    run(&mut state, chars("due<30m"));
    let mut due: Vec<&str> = state.inbox.visible().iter().map(String::as_str).collect();
    due.sort();
    assert_eq!(
        due,
        ["t-approval", "t-manual"],
        "due in 14 minutes, and overdue"
    );
    run(&mut state, vec![key(KeyCode::Esc)]);
    assert!(state.inbox.filter.text.is_empty());

    run(&mut state, vec![key(KeyCode::Char('/'))]);
    run(&mut state, chars("color:red"));
    assert!(
        state
            .inbox
            .filter
            .error
            .as_deref()
            .unwrap()
            .contains("color")
    );
}

#[test]
fn tabs_and_sorting_change_what_is_shown() {
    let mut state = state_with(every_type(), 120, 40);
    run(&mut state, vec![key(KeyCode::Char('2'))]);
    assert_eq!(state.inbox.view, View::Escalated);
    assert_eq!(state.inbox.visible(), ["t-review"]);
    run(&mut state, vec![key(KeyCode::Tab)]);
    assert_eq!(state.inbox.view, View::DueSoon);
    run(&mut state, vec![key(KeyCode::Char('4'))]);
    run(&mut state, vec![key(KeyCode::Char('s'))]);
    assert_eq!(state.inbox.sort, SortKey::Due);
    assert_eq!(state.inbox.visible()[0], "t-manual", "overdue first");
    run(&mut state, vec![key(KeyCode::Char('S'))]);
    assert!(state.inbox.descending);
    run(
        &mut state,
        vec![key(KeyCode::Char('s')), key(KeyCode::Char('s'))],
    );
    assert_eq!(state.inbox.sort, SortKey::Agent);
}

#[test]
fn approving_goes_through_the_undo_window() {
    let mut state = state_with(every_type(), 120, 40);
    run(&mut state, vec![key(KeyCode::Enter)]);
    assert_eq!(dialog(&state).outcome(), "approved");
    run(&mut state, vec![key(KeyCode::Enter)]);
    assert!(matches!(state.mode, Mode::Normal));
    assert!(state.inbox.row("t-approval").unwrap().pending);
    let sent = sent_after_undo_window(&mut state);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "t-approval");
    assert_eq!(sent[0].1["task_result"]["outcome"], "approved");
    run(
        &mut state,
        vec![Action::DecisionSent {
            intent_id: "t-approval".into(),
            result: Ok(()),
        }],
    );
    assert!(state.message.as_ref().unwrap().text.contains("Sent"));
    assert!(state.queued.is_empty());
}

#[test]
fn undo_takes_the_decision_back_with_its_input() {
    let mut state = state_with(every_type(), 120, 40);
    select(&mut state, "t-review");
    run(&mut state, vec![key(KeyCode::Enter), key(KeyCode::Right)]);
    run(&mut state, vec![key(KeyCode::Tab), key(KeyCode::Char('i'))]);
    run(&mut state, chars("split the migration"));
    run(
        &mut state,
        vec![
            key(KeyCode::Esc),
            key(KeyCode::BackTab),
            key(KeyCode::Enter),
        ],
    );
    assert!(matches!(state.mode, Mode::Normal), "{:?}", state.mode);
    run(&mut state, vec![key(KeyCode::Char('u'))]);
    let restored = dialog(&state);
    assert_eq!(restored.outcome(), "changes_requested");
    assert_eq!(restored.comment_text(), "split the migration");
    assert!(!state.inbox.row("t-review").unwrap().pending);
    assert!(
        submitted(&tick(&mut state, 30)).is_empty(),
        "undone decisions are never sent"
    );
}

#[test]
fn review_needs_a_comment_for_changes() {
    let mut state = state_with(every_type(), 120, 40);
    select(&mut state, "t-review");
    run(&mut state, vec![key(KeyCode::Char('r'))]);
    let opened = dialog(&state);
    assert_eq!(
        opened.outcome(),
        "changes_requested",
        "r picks the review's no"
    );
    assert!(
        opened.errors.comment.is_some(),
        "it says why it did not decide at once"
    );
    assert_eq!(opened.focused(), Part::Comment);
    run(&mut state, vec![key(KeyCode::Char('i'))]);
    run(&mut state, chars("please add a rollback step"));
    run(&mut state, vec![key(KeyCode::Enter)]);
    run(&mut state, chars("and tests"));
    assert_eq!(
        dialog(&state).comment_text(),
        "please add a rollback step\nand tests",
        "enter is a newline while typing"
    );
    run(&mut state, vec![key(KeyCode::Esc)]);
    assert!(
        !dialog(&state).inserting,
        "esc leaves insert mode, not the dialog"
    );
    run(&mut state, vec![key(KeyCode::BackTab), key(KeyCode::Enter)]);
    let sent = sent_after_undo_window(&mut state);
    assert_eq!(
        sent[0].1["task_result"]["comment"],
        "please add a rollback step\nand tests"
    );
}

#[test]
fn forms_validate_inline_and_submit_typed_values() {
    let mut state = state_with(every_type(), 120, 40);
    select(&mut state, "t-form");
    run(&mut state, vec![key(KeyCode::Enter), key(KeyCode::Enter)]);
    let invalid = dialog(&state);
    assert!(
        invalid.fields[0].error.is_some(),
        "replicas is required: {:?}",
        invalid.fields
    );
    assert_eq!(invalid.focused(), Part::Field(0));
    run(&mut state, vec![key(KeyCode::Char('i'))]);
    run(&mut state, chars("0"));
    run(
        &mut state,
        vec![
            key(KeyCode::Esc),
            key(KeyCode::BackTab),
            key(KeyCode::Enter),
        ],
    );
    assert!(
        dialog(&state).fields[0]
            .error
            .as_deref()
            .unwrap()
            .contains("minimum")
    );
    // Fix replicas, pick the second region, untick canary.
    run(
        &mut state,
        vec![key(KeyCode::Char('i')), key(KeyCode::Backspace)],
    );
    run(&mut state, chars("3"));
    run(
        &mut state,
        vec![
            key(KeyCode::Enter),
            key(KeyCode::Right),
            key(KeyCode::Tab),
            key(KeyCode::Char(' ')),
        ],
    );
    run(&mut state, vec![key(KeyCode::Home)]);
    for _ in 0..10 {
        if dialog(&state).focused() == Part::Outcome {
            break;
        }
        run(&mut state, vec![key(KeyCode::BackTab)]);
    }
    run(&mut state, vec![key(KeyCode::Enter)]);
    let sent = sent_after_undo_window(&mut state);
    let data = &sent[0].1["task_result"]["data"];
    assert_eq!(data["replicas"], 3);
    assert_eq!(data["region"], "us-east");
    assert_eq!(data["canary"], false);
}

#[test]
fn overrides_need_a_justification_and_the_typed_confirmation() {
    let mut state = state_with(every_type(), 120, 40);
    select(&mut state, "t-override");
    run(&mut state, vec![key(KeyCode::Char('a'))]);
    assert!(
        matches!(state.mode, Mode::Dialog(_)),
        "an override never approves in one key"
    );
    run(&mut state, vec![key(KeyCode::Enter)]);
    assert!(dialog(&state).errors.comment.is_some());
    run(&mut state, vec![key(KeyCode::Char('i'))]);
    run(&mut state, chars("INC-7 needs the fix now"));
    run(
        &mut state,
        vec![
            key(KeyCode::Esc),
            key(KeyCode::Tab),
            key(KeyCode::Char('i')),
        ],
    );
    run(&mut state, chars("overide"));
    run(
        &mut state,
        vec![key(KeyCode::Esc), key(KeyCode::Tab), key(KeyCode::Enter)],
    );
    assert!(
        dialog(&state).errors.confirmation.is_some(),
        "a typo does not confirm"
    );
    run(&mut state, vec![key(KeyCode::Char('i')), ctrl('u')]);
    run(&mut state, chars("override"));
    run(
        &mut state,
        vec![key(KeyCode::Esc), key(KeyCode::Tab), key(KeyCode::Enter)],
    );
    let sent = sent_after_undo_window(&mut state);
    assert_eq!(sent[0].1["task_result"]["outcome"], "override_approved");
    assert_eq!(
        sent[0].1["task_result"]["comment"],
        "INC-7 needs the fix now"
    );
}

#[test]
fn confirmations_approve_with_one_key_and_clarifications_need_an_answer() {
    let mut state = state_with(every_type(), 120, 40);
    select(&mut state, "t-confirm");
    run(&mut state, vec![key(KeyCode::Char('a'))]);
    assert!(matches!(state.mode, Mode::Normal));
    select(&mut state, "t-clarify");
    run(&mut state, vec![key(KeyCode::Char('a'))]);
    assert!(dialog(&state).errors.comment.is_some());
    run(&mut state, vec![key(KeyCode::Char('i'))]);
    run(&mut state, chars("eu-west, close to the users"));
    run(
        &mut state,
        vec![
            key(KeyCode::Esc),
            key(KeyCode::BackTab),
            key(KeyCode::Enter),
        ],
    );
    let sent = sent_after_undo_window(&mut state);
    let outcomes: Vec<&str> = sent
        .iter()
        .map(|(_, body)| body["task_result"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["confirmed", "provided"]);
}

#[test]
fn assignments_complete_from_known_reviewers() {
    let mut state = state_with(every_type(), 120, 40);
    state.reviewers.insert("bob@example.com".into());
    select(&mut state, "t-assign");
    run(
        &mut state,
        vec![
            key(KeyCode::Enter),
            key(KeyCode::Tab),
            key(KeyCode::Char('i')),
        ],
    );
    assert_eq!(dialog(&state).focused(), Part::Assignee);
    run(&mut state, chars("bo"));
    run(&mut state, vec![key(KeyCode::Tab)]);
    assert_eq!(dialog(&state).assignee.text(), "bob@example.com");
    run(
        &mut state,
        vec![
            key(KeyCode::Esc),
            key(KeyCode::BackTab),
            key(KeyCode::Enter),
        ],
    );
    let sent = sent_after_undo_window(&mut state);
    assert_eq!(
        sent[0].1["task_result"]["data"]["assignee"],
        "bob@example.com"
    );
}

#[test]
fn manual_actions_need_evidence() {
    let mut state = state_with(every_type(), 120, 40);
    select(&mut state, "t-manual");
    run(&mut state, vec![key(KeyCode::Char('a'))]);
    assert!(dialog(&state).errors.evidence.is_some());
    run(&mut state, vec![key(KeyCode::Char('i'))]);
    run(&mut state, chars("https://ci.example.com/runs/77"));
    run(&mut state, vec![key(KeyCode::Enter), key(KeyCode::Home)]);
    run(
        &mut state,
        vec![
            key(KeyCode::BackTab),
            key(KeyCode::BackTab),
            key(KeyCode::Enter),
        ],
    );
    let sent = sent_after_undo_window(&mut state);
    assert_eq!(
        sent[0].1["task_result"]["data"]["evidence"],
        "https://ci.example.com/runs/77"
    );
}

#[test]
fn a_refused_decision_reopens_the_dialog_with_everything_typed() {
    let mut state = state_with(every_type(), 120, 40);
    select(&mut state, "t-review");
    run(
        &mut state,
        vec![
            key(KeyCode::Enter),
            key(KeyCode::Tab),
            key(KeyCode::Char('i')),
        ],
    );
    run(&mut state, chars("lgtm"));
    run(
        &mut state,
        vec![
            key(KeyCode::Esc),
            key(KeyCode::BackTab),
            key(KeyCode::Enter),
        ],
    );
    sent_after_undo_window(&mut state);
    let refusal = ClientError::Api {
        status: 409,
        code: "already_decided".into(),
        message: "intent t-review was already decided by bob@example.com at 11:59:00".into(),
        details: json!({"decided_by": "bob@example.com"}),
    };
    run(
        &mut state,
        vec![Action::DecisionSent {
            intent_id: "t-review".into(),
            result: Err(refusal),
        }],
    );
    let reopened = dialog(&state);
    assert!(
        reopened
            .errors
            .general
            .as_deref()
            .unwrap()
            .contains("bob@example.com")
    );
    assert_eq!(reopened.comment_text(), "lgtm");
}

#[test]
fn offline_refuses_decisions_and_online_restores_them() {
    let mut state = state_with(every_type(), 120, 40);
    let retry_at = now().plus_seconds(4);
    run(
        &mut state,
        vec![Action::Disconnected {
            error: "connection refused".into(),
            retry_at,
        }],
    );
    assert!(matches!(state.connection, Connection::Offline { .. }));
    assert_eq!(state.inbox.len(), 8, "the cached list stays readable");
    run(&mut state, vec![key(KeyCode::Enter), key(KeyCode::Enter)]);
    assert!(
        dialog(&state)
            .errors
            .general
            .as_deref()
            .unwrap()
            .contains("Offline")
    );
    assert!(state.queued.is_empty());
    run(&mut state, vec![Action::Connected]);
    assert_eq!(state.connection, Connection::Online);
    run(&mut state, vec![key(KeyCode::Enter)]);
    assert_eq!(state.queued.len(), 1, "the same dialog submits once online");
}

#[test]
fn stream_events_update_the_list_and_notify() {
    let mut state = state_with(every_type(), 120, 40);
    let fresh = task("t-new", TaskType::Approval, "Restart the cache", 0);
    let effects = run(
        &mut state,
        vec![Action::Stream(TaskStreamItem::Upserted(TaskUpsert {
            cursor: 11,
            reason: "assigned".into(),
            task: fresh.clone(),
        }))],
    );
    assert!(
        matches!(&effects[..], [Effect::Notify { title, .. }, ..] if title.contains("Restart the cache")),
        "{effects:?}"
    );
    assert!(state.inbox.row("t-new").unwrap().unseen);

    let effects = run(
        &mut state,
        vec![Action::Stream(TaskStreamItem::Reminder(TaskReminder {
            cursor: 12,
            intent_id: "t-new".into(),
            reminder_no: 1,
            task: fresh,
        }))],
    );
    assert!(effects.iter().any(
        |e| matches!(e, Effect::Notify { title, .. } if title.starts_with("Reminder: Restart"))
    ));

    // A queued decision for a task someone else decided is dropped, and said so.
    select(&mut state, "t-confirm");
    run(&mut state, vec![key(KeyCode::Char('a'))]);
    let removal = TaskRemoval {
        cursor: 13,
        intent_id: "t-confirm".into(),
        reason: "decided".into(),
        status: signoff::domain::Status::Completed,
        by: "bob@example.com".into(),
        outcome: Some("denied".into()),
    };
    run(
        &mut state,
        vec![Action::Stream(TaskStreamItem::Removed(removal))],
    );
    assert!(state.inbox.row("t-confirm").is_none());
    assert!(state.queued.is_empty());
    assert!(
        state
            .message
            .as_ref()
            .unwrap()
            .text
            .contains("bob@example.com")
    );
    assert!(submitted(&tick(&mut state, 10)).is_empty());
}

#[test]
fn bulk_approval_asks_first_and_skips_tasks_that_need_input() {
    let mut state = state_with(every_type(), 120, 40);
    select(&mut state, "t-approval");
    run(&mut state, vec![key(KeyCode::Char(' '))]);
    select(&mut state, "t-review");
    run(&mut state, vec![key(KeyCode::Char(' '))]);
    select(&mut state, "t-confirm");
    run(&mut state, vec![key(KeyCode::Char(' '))]);
    run(&mut state, vec![key(KeyCode::Char('A'))]);
    let Mode::ConfirmBulk { intent_ids } = &state.mode else {
        panic!("expected a confirmation, got {:?}", state.mode);
    };
    assert_eq!(intent_ids.len(), 2, "the review needs its own dialog");
    run(&mut state, vec![key(KeyCode::Char('y'))]);
    let sent = sent_after_undo_window(&mut state);
    let mut ids: Vec<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["t-approval", "t-confirm"]);
}

#[test]
fn the_palette_completes_and_runs_commands() {
    let mut state = state_with(every_type(), 120, 40);
    run(&mut state, vec![key(KeyCode::Char(':'))]);
    run(&mut state, chars("sort d"));
    run(&mut state, vec![key(KeyCode::Tab)]);
    match &state.mode {
        Mode::Palette { input, .. } => assert_eq!(input.text(), "sort due"),
        other => panic!("{other:?}"),
    }
    run(&mut state, vec![key(KeyCode::Enter)]);
    assert_eq!(state.inbox.sort, SortKey::Due);
    run(&mut state, vec![key(KeyCode::Char(':'))]);
    run(&mut state, chars("filter type:form"));
    run(&mut state, vec![key(KeyCode::Enter)]);
    assert_eq!(state.inbox.visible(), ["t-form"]);
    run(&mut state, vec![key(KeyCode::Char(':'))]);
    run(&mut state, chars("fly"));
    run(&mut state, vec![key(KeyCode::Enter)]);
    assert!(state.message.as_ref().unwrap().text.contains("fly"));
}

#[test]
fn help_opens_and_closes_and_quitting_sends_queued_decisions() {
    let mut state = state_with(every_type(), 120, 40);
    run(&mut state, vec![key(KeyCode::Char('?'))]);
    assert!(matches!(state.mode, Mode::Help { .. }));
    run(&mut state, vec![key(KeyCode::Esc)]);
    assert!(matches!(state.mode, Mode::Normal));
    run(&mut state, vec![key(KeyCode::Char('a'))]);
    let effects = run(&mut state, vec![key(KeyCode::Char('q'))]);
    assert_eq!(
        submitted(&effects).len(),
        1,
        "a decision in its undo window is sent, not lost"
    );
    assert_eq!(effects.last(), Some(&Effect::Quit));
}

#[test]
fn selecting_a_task_marks_it_seen_reports_it_viewed_and_loads_its_detail() {
    let mut state = state_with(every_type(), 120, 40);
    assert!(
        !state.inbox.row("t-approval").unwrap().unseen,
        "the first task is selected and shown"
    );
    assert!(state.inbox.row("t-review").unwrap().unseen);
    let effects = run(&mut state, vec![key(KeyCode::Char('j'))]);
    assert_eq!(
        effects,
        [
            Effect::MarkViewed {
                intent_id: "t-review".into()
            },
            Effect::LoadDetail {
                intent_id: "t-review".into()
            }
        ]
    );
    assert!(!state.inbox.row("t-review").unwrap().unseen);
    assert!(
        run(
            &mut state,
            vec![key(KeyCode::Char('k')), key(KeyCode::Char('j'))]
        )
        .is_empty(),
        "history is loaded, and the view reported, once per session"
    );
}
