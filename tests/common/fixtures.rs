//! Inbox fixtures: tasks of every type and a state to render or update.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;
use signoff::domain::{
    HumanTask, Principal, PrincipalKind, Status, TaskSnapshot, TaskStreamItem, TaskType, TaskView,
    Timestamp,
};
use signoff::tui::action::{Action, Effect};
use signoff::tui::settings::TuiSettings;
use signoff::tui::state::State;
use signoff::tui::update::update;

pub fn now() -> Timestamp {
    Timestamp::parse("2026-11-21T12:00:00Z").unwrap()
}

pub fn reviewer() -> Principal {
    Principal::new(
        PrincipalKind::Reviewer,
        "alice@example.com",
        vec!["oncall".into()],
    )
    .unwrap()
}

/// A task of the given type, created `minutes_ago`, with the type's defaults.
pub fn task(id: &str, task_type: TaskType, title: &str, minutes_ago: i64) -> TaskView {
    let spec = json!({"title": title, "task_type": task_type.as_str(), "assignees": ["alice@example.com"]});
    TaskView {
        intent_id: id.into(),
        intent_type: "intent.human_task.v1".into(),
        status: Status::Waiting,
        from_agent: "agent://acme/deployer".into(),
        to_agent: None,
        created_at: now().plus_seconds(-60 * minutes_ago),
        assigned_at: Some(now().plus_seconds(-60 * minutes_ago)),
        due_at: None,
        human_task: HumanTask::from_request(&spec).unwrap(),
        reminders_sent: 0,
        escalation_stage: 0,
        assignees: vec!["alice@example.com".into()],
        votes: vec![],
    }
}

/// One task of each of the eight types, with realistic extras.
pub fn every_type() -> Vec<TaskView> {
    let mut tasks = vec![
        task(
            "t-approval",
            TaskType::Approval,
            "Deploy api 2.3.0 to production",
            42,
        ),
        task(
            "t-review",
            TaskType::Review,
            "Review the database migration plan",
            30,
        ),
        task(
            "t-form",
            TaskType::Form,
            "Fill in the release checklist",
            25,
        ),
        task(
            "t-override",
            TaskType::Override,
            "Override the change freeze",
            20,
        ),
        task(
            "t-confirm",
            TaskType::Confirmation,
            "Confirm the vendor payment of $12,400",
            15,
        ),
        task(
            "t-assign",
            TaskType::Assignment,
            "Assign an owner for INC-2291",
            10,
        ),
        task(
            "t-clarify",
            TaskType::Clarification,
            "Which region should the replica go to?",
            5,
        ),
        task(
            "t-manual",
            TaskType::ManualAction,
            "Rotate the HSM key by hand",
            2,
        ),
    ];
    tasks[0].human_task.description =
        Some("Ship **2.3.0**:\n\n- canary first\n- then all regions".into());
    tasks[0].due_at = Some(now().plus_seconds(14 * 60));
    tasks[1].escalation_stage = 1;
    tasks[1].reminders_sent = 2;
    tasks[2].human_task.form_schema = Some(json!({
        "type": "object",
        "required": ["replicas", "region"],
        "properties": {
            "replicas": {"type": "integer", "minimum": 1, "title": "Replicas"},
            "region": {"type": "string", "enum": ["eu-west", "us-east"]},
            "canary": {"type": "boolean", "default": true},
            "note": {"type": "string"}
        }
    }));
    tasks[7].human_task.evidence_required = true;
    tasks[7].due_at = Some(now().plus_seconds(-5 * 60));
    tasks
}

pub fn state_with(tasks: Vec<TaskView>, width: u16, height: u16) -> State {
    let settings = TuiSettings {
        no_color: true,
        ..TuiSettings::default()
    };
    let mut state = State::new(settings, "http://127.0.0.1:7700", now());
    update(&mut state, Action::Resize { width, height });
    update(&mut state, Action::Identity(reviewer()));
    update(&mut state, Action::Connected);
    update(
        &mut state,
        Action::Stream(TaskStreamItem::Snapshot(TaskSnapshot { cursor: 10, tasks })),
    );
    state
}

pub fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub fn ctrl(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

pub fn chars(text: &str) -> Vec<Action> {
    text.chars().map(|c| key(KeyCode::Char(c))).collect()
}

/// Applies actions in order, collecting every effect.
pub fn run(state: &mut State, actions: Vec<Action>) -> Vec<Effect> {
    actions
        .into_iter()
        .flat_map(|action| update(state, action))
        .collect()
}

/// Moves the selection to the task with this id.
pub fn select(state: &mut State, id: &str) {
    let index = state
        .inbox
        .visible()
        .iter()
        .position(|v| v == id)
        .expect("visible");
    run(state, vec![key(KeyCode::Home)]);
    run(state, (0..index).map(|_| key(KeyCode::Char('j'))).collect());
    assert_eq!(state.selected.as_deref(), Some(id));
}
