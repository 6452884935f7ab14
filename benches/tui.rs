//! Inbox hot paths with 10,000 tasks: drawing one frame, and `update` for one
//! incoming task. Run with `cargo bench --bench tui`.

#[path = "../tests/common/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use fixtures::{every_type, state_with, task};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use signoff::domain::{TaskStreamItem, TaskType, TaskUpsert};
use signoff::tui::action::Action;
use signoff::tui::state::State;
use signoff::tui::update::update;
use signoff::tui::view::render;

const TASKS: usize = 10_000;

fn main() {
    divan::main();
}

/// 10,000 tasks of every type, ages spread over a week.
fn big_inbox() -> State {
    let kinds = every_type();
    let tasks = (0..TASKS)
        .map(|index| {
            let mut t = kinds[index % kinds.len()].clone();
            t.intent_id = format!("task-{index:05}");
            t.human_task.title = format!("{} #{index}", t.human_task.title);
            t.created_at = fixtures::now().plus_seconds(-((index as i64 * 61) % 604_800));
            t
        })
        .collect();
    state_with(tasks, 120, 40)
}

#[divan::bench]
fn render_one_frame_with_10k_tasks(bencher: divan::Bencher) {
    let state = big_inbox();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    bencher.bench_local(|| {
        terminal.draw(|frame| render(&state, frame)).unwrap();
    });
}

#[divan::bench]
fn update_for_one_incoming_task_with_10k_tasks(bencher: divan::Bencher) {
    let state = big_inbox();
    bencher
        .with_inputs(|| {
            let mut incoming = task("task-new", TaskType::Approval, "A new task arrives", 3);
            incoming.created_at = fixtures::now().plus_seconds(-86_400);
            let action = Action::Stream(TaskStreamItem::Upserted(TaskUpsert {
                cursor: 99_999,
                reason: "assigned".into(),
                task: incoming,
            }));
            (state.clone(), action)
        })
        // Returning the state hands its (large) drop to divan, outside the timing.
        .bench_local_values(|(mut state, action)| {
            update(&mut state, action);
            state
        });
}

#[divan::bench]
fn update_for_a_key_press_with_10k_tasks(bencher: divan::Bencher) {
    let state = big_inbox();
    bencher
        .with_inputs(|| {
            (
                state.clone(),
                fixtures::key(crossterm::event::KeyCode::Char('j')),
            )
        })
        // Returning the state hands its (large) drop to divan, outside the timing.
        .bench_local_values(|(mut state, action)| {
            update(&mut state, action);
            state
        });
}
