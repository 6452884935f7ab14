//! `update`: the only code that changes the inbox state. It is synchronous and
//! pure: the same state and action always give the same new state and effects,
//! with time arriving as an action (`Tick`), so every behaviour is unit-testable.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};
use ratatui::layout::Rect;

use super::action::{Action, Effect};
use super::dialog::{Dialog, Part};
use super::filter::Filter;
use super::inbox::{SortKey, View};
use super::input::LineInput;
use super::keymap::{Command, Key, Resolution};
use super::state::{Connection, Detail, Message, Mode, NOTICE_LIMIT, Queued, State, Tone};
use super::view::layout::{areas, list_rows};
use super::view::theme::ThemeName;
use crate::domain::{TaskStreamItem, TaskType, Timestamp, Verdict};

/// How long a status-bar message stays up.
const MESSAGE_SECONDS: i64 = 8;

pub fn update(state: &mut State, action: Action) -> Vec<Effect> {
    let mut effects = Vec::new();
    match action {
        Action::Key(key) if key.kind != KeyEventKind::Release => {
            handle_key(state, key, &mut effects)
        }
        Action::Key(_) => {}
        Action::Paste(text) => paste(state, &text),
        Action::Mouse(mouse) => handle_mouse(state, mouse),
        Action::Resize { width, height } => {
            state.width = width;
            state.height = height;
        }
        Action::Tick(now) => tick(state, now, &mut effects),
        Action::Connected => {
            state.connection = Connection::Online;
            state.last_sync = Some(state.now);
        }
        Action::Disconnected { error, retry_at } => {
            state.connection = Connection::Offline { error, retry_at };
        }
        Action::Stream(item) => stream_item(state, item, &mut effects),
        Action::Identity(principal) => {
            state.me = Some(principal);
            rebuild(state);
        }
        Action::DecisionSent { intent_id, result } => decision_sent(state, &intent_id, result),
        Action::DetailLoaded { intent_id, result } => {
            let detail = match result {
                Ok((payload, events)) => Detail::Loaded { payload, events },
                Err(error) => Detail::Failed(error),
            };
            state.details.insert(intent_id, detail);
        }
        Action::EditorClosed { text } => {
            if let (Mode::Dialog(dialog), Some(text)) = (&mut state.mode, text) {
                dialog.set_comment(&text);
            }
        }
        Action::Notice(text) => {
            state.notices.push_front((state.now, text.clone()));
            state.notices.truncate(NOTICE_LIMIT);
            say(state, text, Tone::Info);
        }
    }
    settle_selection(state, &mut effects);
    effects
}

fn say(state: &mut State, text: impl Into<String>, tone: Tone) {
    state.message = Some(Message {
        text: text.into(),
        tone,
        at: state.now,
    });
}

fn rebuild(state: &mut State) {
    let context = state.context();
    state.inbox.rebuild(&context);
}

fn tick(state: &mut State, now: Timestamp, effects: &mut Vec<Effect>) {
    state.now = now;
    if state.inbox.depends_on_time() {
        rebuild(state);
    }
    if state
        .message
        .as_ref()
        .is_some_and(|message| message.at.seconds_until(&now) >= MESSAGE_SECONDS)
    {
        state.message = None;
    }
    for queued in state
        .queued
        .iter_mut()
        .filter(|q| !q.sent && q.send_at <= now)
    {
        queued.sent = true;
        effects.push(Effect::Submit {
            intent_id: queued.intent_id.clone(),
            body: queued.body.clone(),
        });
    }
}

fn learn_reviewers(state: &mut State, assignees: &[String]) {
    for assignee in assignees {
        state.reviewers.insert(assignee.clone());
    }
}

fn stream_item(state: &mut State, item: TaskStreamItem, effects: &mut Vec<Effect>) {
    state.last_sync = Some(state.now);
    state.connection = Connection::Online;
    let context = state.context();
    let notify_on = state.settings.notify_on;
    match item {
        TaskStreamItem::Snapshot(snapshot) => {
            for task in &snapshot.tasks {
                learn_reviewers(state, &task.assignees);
            }
            state.inbox.replace_all(snapshot.tasks, &context);
        }
        TaskStreamItem::Upserted(upsert) => {
            learn_reviewers(state, &upsert.task.assignees);
            let title = upsert.task.human_task.title.clone();
            let agent = upsert.task.from_agent.clone();
            let is_new = state.inbox.upsert(upsert.task, &context);
            let wanted = match upsert.reason.as_str() {
                "assigned" | "delegated" => notify_on.assigned && is_new,
                "escalated" => notify_on.escalated,
                _ => false,
            };
            if wanted {
                let heading = if upsert.reason == "escalated" {
                    "Escalated to you"
                } else {
                    "New task"
                };
                effects.push(Effect::Notify {
                    title: format!("{heading}: {}", super::text::sanitize_line(&title)),
                    body: format!("from {}", super::text::sanitize_line(&agent)),
                });
            }
        }
        TaskStreamItem::Removed(removal) => {
            state.inbox.remove(&removal.intent_id, &context);
            state.details.remove(&removal.intent_id);
            let who = super::text::sanitize_line(&removal.by);
            let outcome = removal.outcome.as_deref().map(super::text::sanitize_line);
            let reason = removal.reason.replace('_', " ");
            // A system ending is never worded as someone's decision.
            let ended = match (
                crate::domain::lifecycle::is_system_actor(&removal.by),
                outcome,
            ) {
                (true, Some(outcome)) => format!(
                    "{reason}: nobody decided, so the system applied the fallback «{outcome}»"
                ),
                (true, None) => format!("{reason} by the system: nobody decided in time"),
                (false, Some(outcome)) => format!("{reason} ({outcome}) by {who}"),
                (false, None) => format!("{reason} by {who}"),
            };
            // A decision of ours still in its undo window can no longer be sent.
            let before = state.queued.len();
            state
                .queued
                .retain(|q| q.sent || q.intent_id != removal.intent_id);
            if state.queued.len() < before {
                say(
                    state,
                    format!("Not sent: the task was {ended}"),
                    Tone::Error,
                );
            }
            if let Mode::Dialog(dialog) = &mut state.mode
                && dialog.intent_id == removal.intent_id
            {
                dialog.errors.general = Some(format!("This task was {ended}; your input is kept."));
            }
        }
        TaskStreamItem::Reminder(reminder) => {
            let title = super::text::sanitize_line(&reminder.task.human_task.title);
            state.inbox.upsert(reminder.task, &context);
            if notify_on.reminder {
                effects.push(Effect::Notify {
                    title: format!("Reminder: {title}"),
                    body: format!(
                        "reminder {} — still waiting for your decision",
                        reminder.reminder_no
                    ),
                });
            }
        }
    }
}

fn decision_sent(
    state: &mut State,
    intent_id: &str,
    result: Result<(), crate::client::ClientError>,
) {
    let Some(position) = state
        .queued
        .iter()
        .position(|q| q.intent_id == intent_id && q.sent)
    else {
        return;
    };
    let queued = state.queued.remove(position);
    if let Some(row) = state.inbox.row_mut(intent_id) {
        row.pending = false;
    }
    match result {
        Ok(()) => say(
            state,
            format!("Sent: {} «{}»", queued.outcome, queued.title),
            Tone::Success,
        ),
        Err(error) => {
            let mut dialog = queued.dialog;
            dialog.show_server_error(&error);
            if matches!(state.mode, Mode::Normal) {
                state.mode = Mode::Dialog(dialog);
            } else {
                say(
                    state,
                    format!("Not sent «{}»: {error}", queued.title),
                    Tone::Error,
                );
            }
        }
    }
}

/// Keeps the selection on the same task when it can, otherwise on the same row;
/// keeps it on screen; marks it seen and asks for its history.
fn settle_selection(state: &mut State, effects: &mut Vec<Effect>) {
    let visible = state.inbox.visible();
    let index = match state
        .selected
        .as_deref()
        .and_then(|id| visible.iter().position(|v| v == id))
    {
        Some(index) => index,
        None => state.selected_index.min(visible.len().saturating_sub(1)),
    };
    let new_selection = visible.get(index).cloned();
    if new_selection != state.selected {
        state.detail_scroll = 0;
    }
    state.selected = new_selection;
    state.selected_index = index;
    let rows = list_rows(state).max(1);
    if index < state.offset {
        state.offset = index;
    } else if index >= state.offset + rows {
        state.offset = index + 1 - rows;
    }
    state.offset = state
        .offset
        .min(state.inbox.visible().len().saturating_sub(rows));
    let detail_shown = areas(state, Rect::new(0, 0, state.width, state.height))
        .detail
        .is_some();
    if let Some(id) = state.selected.clone()
        && detail_shown
    {
        if let Some(row) = state.inbox.row_mut(&id) {
            row.unseen = false;
        }
        // The audit records who saw a task before it was decided.
        if state.viewed.insert(id.clone()) {
            effects.push(Effect::MarkViewed {
                intent_id: id.clone(),
            });
        }
        if !state.details.contains_key(&id) {
            state.details.insert(id.clone(), Detail::Loading);
            effects.push(Effect::LoadDetail { intent_id: id });
        }
    }
}

fn move_selection(state: &mut State, delta: isize) {
    let count = state.inbox.visible().len();
    if count == 0 {
        return;
    }
    let index = (state.selected_index as isize + delta).clamp(0, count as isize - 1) as usize;
    select_index(state, index);
}

fn select_index(state: &mut State, index: usize) {
    state.selected_index = index;
    state.selected = state.inbox.visible().get(index).cloned();
}

fn handle_key(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) {
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        quit(state, effects);
        return;
    }
    match &state.mode {
        Mode::Normal => normal_key(state, key, effects),
        Mode::Filter { .. } => filter_key(state, key),
        Mode::Palette { .. } => palette_key(state, key, effects),
        Mode::Help { .. } => help_key(state, key),
        Mode::Dialog(_) => dialog_key(state, key, effects),
        Mode::ConfirmBulk { .. } => confirm_bulk_key(state, key),
    }
}

/// Sends decisions still in their undo window (quitting should not lose them),
/// then quits.
fn quit(state: &mut State, effects: &mut Vec<Effect>) {
    for queued in state.queued.iter_mut().filter(|q| !q.sent) {
        queued.sent = true;
        effects.push(Effect::Submit {
            intent_id: queued.intent_id.clone(),
            body: queued.body.clone(),
        });
    }
    effects.push(Effect::Quit);
}

fn normal_key(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) {
    if key.code == KeyCode::Esc {
        state.pending_keys.clear();
        if !state.inbox.filter.text.is_empty() {
            set_filter(state, "");
        }
        return;
    }
    let pressed = Key::from_event(&key);
    match state.settings.keymap.resolve(&state.pending_keys, pressed) {
        Resolution::Prefix => state.pending_keys.push(pressed),
        Resolution::Unbound => state.pending_keys.clear(),
        Resolution::Run(command) => {
            state.pending_keys.clear();
            run_command(state, command, effects);
        }
    }
}

fn set_view(state: &mut State, view: View) {
    state.inbox.view = view;
    rebuild(state);
}

fn set_filter(state: &mut State, text: &str) {
    state.inbox.filter = Filter::parse(text);
    rebuild(state);
}

fn run_command(state: &mut State, command: Command, effects: &mut Vec<Effect>) {
    let page = list_rows(state).max(1) as isize;
    match command {
        Command::Quit => quit(state, effects),
        Command::Help => state.mode = Mode::Help { scroll: 0 },
        Command::Filter => {
            state.mode = Mode::Filter {
                input: LineInput::new(&state.inbox.filter.text),
            }
        }
        Command::Palette => {
            state.mode = Mode::Palette {
                input: LineInput::default(),
                selected: 0,
            }
        }
        Command::MoveDown => move_selection(state, 1),
        Command::MoveUp => move_selection(state, -1),
        Command::Top => select_index(state, 0),
        Command::Bottom => select_index(state, state.inbox.visible().len().saturating_sub(1)),
        Command::PageDown => move_selection(state, page),
        Command::PageUp => move_selection(state, -page),
        Command::HalfPageDown => move_selection(state, (page / 2).max(1)),
        Command::HalfPageUp => move_selection(state, -(page / 2).max(1)),
        Command::Open => open_dialog(state, None),
        Command::Approve => quick_decision(state, Verdict::Approving),
        Command::Reject => quick_decision(state, Verdict::Rejecting),
        Command::Zoom => state.zoomed = !state.zoomed,
        Command::NextView | Command::PreviousView => {
            let step = if command == Command::NextView {
                1
            } else {
                View::ALL.len() - 1
            };
            let next = View::ALL[(state.inbox.view.index() + step) % View::ALL.len()];
            set_view(state, next);
        }
        Command::ViewMine => set_view(state, View::Mine),
        Command::ViewEscalated => set_view(state, View::Escalated),
        Command::ViewDueSoon => set_view(state, View::DueSoon),
        Command::ViewAll => set_view(state, View::All),
        Command::CycleSort => {
            state.inbox.sort = state.inbox.sort.next();
            rebuild(state);
        }
        Command::ReverseSort => {
            state.inbox.descending = !state.inbox.descending;
            rebuild(state);
        }
        Command::Mark => {
            if let Some(id) = state.selected.clone()
                && let Some(row) = state.inbox.row_mut(&id)
            {
                row.marked = !row.marked;
                move_selection(state, 1);
            }
        }
        Command::BulkApprove => bulk_approve(state),
        Command::Undo => undo(state),
        Command::CopyId => {
            if let Some(id) = state.selected.clone() {
                say(state, format!("Copied {id}"), Tone::Info);
                effects.push(Effect::Copy { text: id });
            }
        }
        Command::DetailDown => state.detail_scroll = state.detail_scroll.saturating_add(3),
        Command::DetailUp => state.detail_scroll = state.detail_scroll.saturating_sub(3),
    }
}

const OFFLINE_REFUSAL: &str = "Offline: decisions are disabled until the server is reachable again";

fn open_dialog(state: &mut State, verdict: Option<Verdict>) {
    let Some(row) = state.selected_row() else {
        say(state, "No task selected", Tone::Info);
        return;
    };
    if row.pending {
        say(
            state,
            "A decision for this task is already queued; press u to undo it",
            Tone::Info,
        );
        return;
    }
    let dialog = Dialog::open(&row.task, verdict);
    state.mode = Mode::Dialog(Box::new(dialog));
}

/// `a` / `r`: decide at once when the task needs nothing more than a yes or no
/// (overrides always need their confirm step); otherwise the dialog stays open
/// on that outcome, saying what is missing.
fn quick_decision(state: &mut State, verdict: Verdict) {
    open_dialog(state, Some(verdict));
    let Mode::Dialog(dialog) = &mut state.mode else {
        return;
    };
    if dialog.task.outcome_with_verdict(verdict).is_none() {
        dialog.errors.general = Some("This task has no such outcome; pick one.".to_string());
        return;
    }
    if dialog.task.task_type != TaskType::Override {
        submit_dialog(state);
    }
}

fn enqueue(state: &mut State, dialog: Box<Dialog>, body: serde_json::Value) {
    let title = dialog.task.title.clone();
    let outcome = dialog.outcome().to_string();
    let intent_id = dialog.intent_id.clone();
    if let Some(row) = state.inbox.row_mut(&intent_id) {
        row.pending = true;
    }
    let undo_seconds = state.settings.undo_seconds as i64;
    state.queued.push(Queued {
        intent_id,
        title: title.clone(),
        outcome: outcome.clone(),
        body,
        send_at: state.now.plus_seconds(undo_seconds),
        sent: false,
        dialog,
    });
    let undo = state.settings.keymap.hint(Command::Undo);
    say(
        state,
        format!("{outcome} «{title}» — sending in {undo_seconds}s, {undo} to undo"),
        Tone::Info,
    );
}

fn undo(state: &mut State) {
    let Some(position) = state.queued.iter().rposition(|q| !q.sent) else {
        say(
            state,
            "Nothing to undo: decisions already sent cannot be taken back",
            Tone::Info,
        );
        return;
    };
    let queued = state.queued.remove(position);
    if let Some(row) = state.inbox.row_mut(&queued.intent_id) {
        row.pending = false;
    }
    state.selected = Some(queued.intent_id.clone());
    say(
        state,
        format!("Undone: {} «{}»", queued.outcome, queued.title),
        Tone::Info,
    );
    if matches!(state.mode, Mode::Normal) {
        state.mode = Mode::Dialog(queued.dialog);
    }
}

/// Tasks that may be approved in bulk: a plain yes with nothing to fill in.
fn bulk_eligible(task: &crate::domain::TaskView) -> bool {
    if !matches!(
        task.human_task.task_type,
        TaskType::Approval | TaskType::Confirmation
    ) {
        return false;
    }
    let mut dialog = Dialog::open(task, Some(Verdict::Approving));
    task.human_task
        .outcome_with_verdict(Verdict::Approving)
        .is_some()
        && dialog.validate().is_some()
}

fn bulk_approve(state: &mut State) {
    let marked: Vec<&super::inbox::TaskRow> = state
        .inbox
        .rows()
        .filter(|row| row.marked && !row.pending)
        .collect();
    if marked.is_empty() {
        let mark = state.settings.keymap.hint(Command::Mark);
        say(state, format!("Mark tasks with {mark} first"), Tone::Info);
        return;
    }
    let eligible: Vec<String> = marked
        .iter()
        .filter(|row| bulk_eligible(&row.task))
        .map(|row| row.task.intent_id.clone())
        .collect();
    let skipped = marked.len() - eligible.len();
    if eligible.is_empty() {
        say(
            state,
            "None of the marked tasks may be approved in bulk (only plain approvals and confirmations)",
            Tone::Error,
        );
        return;
    }
    if skipped > 0 {
        say(
            state,
            format!("{skipped} marked task(s) need their own dialog and are left out"),
            Tone::Info,
        );
    }
    state.mode = Mode::ConfirmBulk {
        intent_ids: eligible,
    };
}

fn confirm_bulk_key(state: &mut State, key: KeyEvent) {
    let Mode::ConfirmBulk { intent_ids } = std::mem::replace(&mut state.mode, Mode::Normal) else {
        return;
    };
    match key.code {
        KeyCode::Char('y') | KeyCode::Char('Y') => {
            if !state.is_online() {
                say(state, OFFLINE_REFUSAL, Tone::Error);
                return;
            }
            for id in intent_ids {
                let Some(task) = state.inbox.row(&id).map(|row| row.task.clone()) else {
                    continue;
                };
                let mut dialog = Box::new(Dialog::open(&task, Some(Verdict::Approving)));
                if let Some(body) = dialog.validate() {
                    if let Some(row) = state.inbox.row_mut(&id) {
                        row.marked = false;
                    }
                    enqueue(state, dialog, body);
                }
            }
        }
        KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
            say(state, "Bulk approval cancelled", Tone::Info)
        }
        _ => state.mode = Mode::ConfirmBulk { intent_ids },
    }
}

fn filter_key(state: &mut State, key: KeyEvent) {
    let Mode::Filter { input } = &mut state.mode else {
        return;
    };
    match key.code {
        KeyCode::Esc => {
            state.mode = Mode::Normal;
            set_filter(state, "");
        }
        KeyCode::Enter => state.mode = Mode::Normal,
        _ => {
            if input.handle(&key) {
                let text = input.text().to_string();
                set_filter(state, &text);
            }
        }
    }
}

fn help_key(state: &mut State, key: KeyEvent) {
    let Mode::Help { scroll } = &mut state.mode else {
        return;
    };
    match key.code {
        KeyCode::Char('j') | KeyCode::Down => *scroll = scroll.saturating_add(1),
        KeyCode::Char('k') | KeyCode::Up => *scroll = scroll.saturating_sub(1),
        KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('?') | KeyCode::F(1) | KeyCode::Enter => {
            state.mode = Mode::Normal
        }
        _ => {}
    }
}

/// Everything the palette can run, for completion.
pub fn palette_commands() -> Vec<String> {
    let mut commands: Vec<String> = vec![
        "open",
        "approve",
        "reject",
        "undo",
        "zoom",
        "copy-id",
        "help",
        "quit",
        "clear-filter",
        "reverse",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    commands.extend(
        View::ALL
            .iter()
            .map(|view| format!("view {}", view.label().to_lowercase())),
    );
    commands.extend(
        SortKey::ALL
            .iter()
            .map(|key| format!("sort {}", key.label())),
    );
    commands.extend(
        ThemeName::ALL
            .iter()
            .map(|theme| format!("theme {}", theme.label())),
    );
    commands.push("filter ".to_string());
    commands
}

/// Palette entries starting with what was typed.
pub fn palette_matches(typed: &str) -> Vec<String> {
    let typed = typed.trim_start().to_lowercase();
    palette_commands()
        .into_iter()
        .filter(|command| {
            command.starts_with(&typed) || (typed.starts_with("filter ") && command == "filter ")
        })
        .collect()
}

fn palette_key(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) {
    let Mode::Palette { input, selected } = &mut state.mode else {
        return;
    };
    let matches = palette_matches(input.text());
    match key.code {
        KeyCode::Esc => state.mode = Mode::Normal,
        KeyCode::Down => *selected = (*selected + 1).min(matches.len().saturating_sub(1)),
        KeyCode::Up => *selected = selected.saturating_sub(1),
        KeyCode::Tab => {
            if let Some(choice) = matches
                .get(*selected)
                .filter(|_| !input.text().starts_with("filter "))
            {
                input.set(choice);
                *selected = 0;
            }
        }
        KeyCode::Enter => {
            let typed = input.text().trim().to_string();
            let command = if palette_commands().contains(&typed) || typed.starts_with("filter ") {
                typed
            } else {
                matches.get(*selected).cloned().unwrap_or(typed)
            };
            state.mode = Mode::Normal;
            run_palette(state, &command, effects);
        }
        _ => {
            if input.handle(&key) {
                *selected = 0;
            }
        }
    }
}

fn run_palette(state: &mut State, command: &str, effects: &mut Vec<Effect>) {
    let (verb, argument) = command.split_once(' ').unwrap_or((command, ""));
    let argument = argument.trim();
    match verb {
        "open" => run_command(state, Command::Open, effects),
        "approve" => run_command(state, Command::Approve, effects),
        "reject" => run_command(state, Command::Reject, effects),
        "undo" => run_command(state, Command::Undo, effects),
        "zoom" => run_command(state, Command::Zoom, effects),
        "copy-id" => run_command(state, Command::CopyId, effects),
        "help" => run_command(state, Command::Help, effects),
        "quit" => run_command(state, Command::Quit, effects),
        "reverse" => run_command(state, Command::ReverseSort, effects),
        "clear-filter" => set_filter(state, ""),
        "filter" => set_filter(state, argument),
        "view" => match View::ALL
            .into_iter()
            .find(|view| view.label().to_lowercase().starts_with(argument))
        {
            Some(view) if !argument.is_empty() => set_view(state, view),
            _ => say(
                state,
                format!("No view `{argument}`; use mine, escalated, due soon or all"),
                Tone::Error,
            ),
        },
        "sort" => match SortKey::parse(argument) {
            Some(key) => {
                state.inbox.sort = key;
                rebuild(state);
            }
            None => say(
                state,
                format!("No sort `{argument}`; use age, due, type or agent"),
                Tone::Error,
            ),
        },
        "theme" => match ThemeName::parse(argument) {
            Some(theme) => state.settings.theme = theme,
            None => say(
                state,
                format!("No theme `{argument}`; use dark, light or high-contrast"),
                Tone::Error,
            ),
        },
        "" => {}
        other => say(state, format!("Unknown command `{other}`"), Tone::Error),
    }
}

fn submit_dialog(state: &mut State) {
    let online = state.is_online();
    let Mode::Dialog(dialog) = &mut state.mode else {
        return;
    };
    if !online {
        dialog.errors.general = Some(OFFLINE_REFUSAL.to_string());
        return;
    }
    if let Some(body) = dialog.validate() {
        let Mode::Dialog(dialog) = std::mem::replace(&mut state.mode, Mode::Normal) else {
            return;
        };
        enqueue(state, dialog, body);
    }
}

fn dialog_key(state: &mut State, key: KeyEvent, effects: &mut Vec<Effect>) {
    let reviewers: Vec<String> = state.reviewers.iter().cloned().collect();
    let Mode::Dialog(dialog) = &mut state.mode else {
        return;
    };
    let part = dialog.focused();
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('e') && part == Part::Comment {
        effects.push(Effect::OpenEditor {
            text: dialog.comment_text(),
        });
        return;
    }
    if dialog.inserting {
        insert_key(dialog, part, key, &reviewers);
        return;
    }
    match key.code {
        KeyCode::Esc => {
            state.mode = Mode::Normal;
            say(state, "Decision cancelled; nothing was sent", Tone::Info);
        }
        KeyCode::Tab | KeyCode::Down | KeyCode::Char('j') => dialog.move_focus(1),
        KeyCode::BackTab | KeyCode::Up | KeyCode::Char('k') => dialog.move_focus(-1),
        KeyCode::Left
        | KeyCode::Right
        | KeyCode::Char('h')
        | KeyCode::Char('l')
        | KeyCode::Char(' ') => {
            let delta = if matches!(key.code, KeyCode::Left | KeyCode::Char('h')) {
                -1
            } else {
                1
            };
            match part {
                Part::Outcome => dialog.cycle_outcome(delta),
                Part::Field(index) => {
                    if let Some(field) = dialog.fields.get_mut(index) {
                        field.cycle(delta);
                    }
                }
                _ => {}
            }
        }
        KeyCode::Char('i') if part.is_text(dialog) => dialog.inserting = true,
        KeyCode::Enter if part.is_text(dialog) => dialog.inserting = true,
        KeyCode::Enter => submit_dialog(state),
        _ => {}
    }
}

/// Keys while typing into a dialog part: everything goes to the text except Esc.
fn insert_key(dialog: &mut Dialog, part: Part, key: KeyEvent, reviewers: &[String]) {
    if key.code == KeyCode::Esc {
        dialog.inserting = false;
        return;
    }
    if part == Part::Comment {
        dialog.comment.input(key);
        return;
    }
    if part == Part::Assignee {
        let suggestions = dialog.completions(reviewers.iter());
        match key.code {
            KeyCode::Tab => {
                if let Some(choice) = suggestions.get(dialog.completion) {
                    dialog.assignee.set(choice);
                }
                dialog.completion = 0;
                return;
            }
            KeyCode::Down => {
                dialog.completion =
                    (dialog.completion + 1).min(suggestions.len().saturating_sub(1));
                return;
            }
            KeyCode::Up => {
                dialog.completion = dialog.completion.saturating_sub(1);
                return;
            }
            _ => {}
        }
    }
    if key.code == KeyCode::Enter {
        dialog.inserting = false;
        dialog.move_focus(1);
        return;
    }
    let input = match part {
        Part::Field(index) => dialog.fields.get_mut(index).map(|field| &mut field.input),
        Part::Assignee => Some(&mut dialog.assignee),
        Part::Evidence => Some(&mut dialog.evidence),
        Part::Confirmation => Some(&mut dialog.confirmation),
        Part::Outcome | Part::Comment => None,
    };
    if let Some(input) = input
        && input.handle(&key)
        && part == Part::Assignee
    {
        dialog.completion = 0;
    }
}

fn paste(state: &mut State, text: &str) {
    match &mut state.mode {
        Mode::Filter { input } => {
            input.insert_str(&text.replace('\n', " "));
            let typed = input.text().to_string();
            set_filter(state, &typed);
        }
        Mode::Palette { input, .. } => input.insert_str(&text.replace('\n', " ")),
        Mode::Dialog(dialog) if dialog.inserting => match dialog.focused() {
            Part::Comment => {
                dialog.comment.insert_str(text);
            }
            Part::Field(index) => {
                if let Some(field) = dialog.fields.get_mut(index) {
                    field.input.insert_str(&text.replace('\n', " "));
                }
            }
            Part::Assignee => dialog.assignee.insert_str(text.trim()),
            Part::Evidence => dialog.evidence.insert_str(&text.replace('\n', " ")),
            Part::Confirmation => dialog.confirmation.insert_str(text.trim()),
            Part::Outcome => {}
        },
        _ => {}
    }
}

fn handle_mouse(state: &mut State, mouse: crossterm::event::MouseEvent) {
    if !state.settings.mouse || !matches!(state.mode, Mode::Normal) {
        return;
    }
    match mouse.kind {
        MouseEventKind::ScrollDown => move_selection(state, 1),
        MouseEventKind::ScrollUp => move_selection(state, -1),
        MouseEventKind::Down(crossterm::event::MouseButton::Left) => {
            let Some(list) = areas(state, Rect::new(0, 0, state.width, state.height)).list else {
                return;
            };
            // Two lines above the first row: the border and the column header.
            let first_row = list.y + 2;
            if mouse.column >= list.x
                && mouse.column < list.right()
                && mouse.row >= first_row
                && mouse.row < list.bottom().saturating_sub(1)
            {
                let index = state.offset + usize::from(mouse.row - first_row);
                if index < state.inbox.visible().len() {
                    select_index(state, index);
                }
            }
        }
        _ => {}
    }
}
