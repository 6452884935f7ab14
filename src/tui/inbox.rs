//! The reviewer's task list: every task the stream delivered, and the ordered,
//! filtered subset on screen. Single-task changes (the common case: one task
//! arrives, one is decided) update the visible order in place with a binary
//! search instead of re-sorting, so a 10,000-task inbox stays fast.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::filter::Filter;
use super::text::{sanitize, sanitize_line};
use crate::domain::{Principal, TaskView, Timestamp};

/// How soon a deadline must be for the "Due soon" view.
pub const DUE_SOON_SECONDS: i64 = 3_600;

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// The task with every agent-supplied string sanitized.
    pub task: TaskView,
    pub unseen: bool,
    pub marked: bool,
    /// A decision is queued in the undo window.
    pub pending: bool,
    /// Lower-cased title, description, agent, id and type, for free-text filtering.
    pub search_text: String,
}

impl TaskRow {
    pub fn new(mut task: TaskView) -> TaskRow {
        let human = &mut task.human_task;
        human.title = sanitize_line(&human.title);
        human.description = human.description.as_deref().map(sanitize);
        human.allowed_outcomes = human
            .allowed_outcomes
            .iter()
            .map(|o| sanitize_line(o))
            .collect();
        human.assignees = human.assignees.iter().map(|a| sanitize_line(a)).collect();
        task.assignees = task.assignees.iter().map(|a| sanitize_line(a)).collect();
        task.from_agent = sanitize_line(&task.from_agent);
        task.to_agent = task.to_agent.as_deref().map(sanitize_line);
        let search_text = format!(
            "{} {} {} {} {}",
            task.human_task.title,
            task.human_task.description.as_deref().unwrap_or_default(),
            task.from_agent,
            task.intent_id,
            task.human_task.task_type.as_str()
        )
        .to_lowercase();
        TaskRow {
            task,
            unseen: false,
            marked: false,
            pending: false,
            search_text,
        }
    }
}

/// What matching needs besides the task: the time and who is looking.
#[derive(Debug, Clone)]
pub struct MatchContext {
    pub now: Timestamp,
    pub me: Option<Principal>,
}

impl MatchContext {
    /// Named personally; for an admin also tasks nobody was named for.
    pub fn is_mine(&self, task: &TaskView) -> bool {
        let Some(me) = &self.me else {
            return true;
        };
        let named = task
            .assignees
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&me.identity));
        let teams = task.assignees.iter().any(|a| me.holds_assignee(a));
        named || teams || (me.is_admin() && task.assignees.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Mine,
    Escalated,
    DueSoon,
    All,
}

impl View {
    pub const ALL: [View; 4] = [View::Mine, View::Escalated, View::DueSoon, View::All];

    pub fn label(&self) -> &'static str {
        match self {
            View::Mine => "Mine",
            View::Escalated => "Escalated",
            View::DueSoon => "Due soon",
            View::All => "All",
        }
    }

    pub fn index(&self) -> usize {
        View::ALL.iter().position(|view| view == self).unwrap_or(0)
    }

    pub fn includes(&self, task: &TaskView, context: &MatchContext) -> bool {
        match self {
            View::Mine => context.is_mine(task),
            View::Escalated => task.escalation_stage > 0,
            View::DueSoon => task
                .due_at
                .is_some_and(|due| context.now.seconds_until(&due) <= DUE_SOON_SECONDS),
            View::All => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Age,
    Due,
    Type,
    Agent,
}

impl SortKey {
    pub const ALL: [SortKey; 4] = [SortKey::Age, SortKey::Due, SortKey::Type, SortKey::Agent];

    pub fn label(&self) -> &'static str {
        match self {
            SortKey::Age => "age",
            SortKey::Due => "due",
            SortKey::Type => "type",
            SortKey::Agent => "agent",
        }
    }

    pub fn next(&self) -> SortKey {
        let index = SortKey::ALL.iter().position(|key| key == self).unwrap_or(0);
        SortKey::ALL[(index + 1) % SortKey::ALL.len()]
    }

    pub fn parse(text: &str) -> Option<SortKey> {
        SortKey::ALL.into_iter().find(|key| key.label() == text)
    }

    /// Oldest first, soonest deadline first (none last), then by type or agent;
    /// ties fall back to age and id so the order is total and stable.
    fn compare(&self, a: &TaskView, b: &TaskView) -> Ordering {
        let by_age = || {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.intent_id.cmp(&b.intent_id))
        };
        match self {
            SortKey::Age => by_age(),
            SortKey::Due => match (a.due_at, b.due_at) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
            .then_with(by_age),
            SortKey::Type => a
                .human_task
                .task_type
                .as_str()
                .cmp(b.human_task.task_type.as_str())
                .then_with(by_age),
            SortKey::Agent => a.from_agent.cmp(&b.from_agent).then_with(by_age),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Inbox {
    rows: HashMap<String, TaskRow>,
    visible: Vec<String>,
    counts: [usize; 4],
    pub view: View,
    pub sort: SortKey,
    pub descending: bool,
    pub filter: Filter,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox {
            rows: HashMap::new(),
            visible: Vec::new(),
            counts: [0; 4],
            view: View::All,
            sort: SortKey::Age,
            descending: false,
            filter: Filter::default(),
        }
    }
}

impl Inbox {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Ids on screen, in order.
    pub fn visible(&self) -> &[String] {
        &self.visible
    }

    /// How many tasks each view would show, ignoring the filter.
    pub fn count(&self, view: View) -> usize {
        self.counts[view.index()]
    }

    pub fn row(&self, intent_id: &str) -> Option<&TaskRow> {
        self.rows.get(intent_id)
    }

    pub fn row_mut(&mut self, intent_id: &str) -> Option<&mut TaskRow> {
        self.rows.get_mut(intent_id)
    }

    pub fn rows(&self) -> impl Iterator<Item = &TaskRow> {
        self.rows.values()
    }

    fn order(&self, a: &TaskView, b: &TaskView) -> Ordering {
        let order = self.sort.compare(a, b);
        if self.descending {
            order.reverse()
        } else {
            order
        }
    }

    fn shown(&self, row: &TaskRow, context: &MatchContext) -> bool {
        self.view.includes(&row.task, context) && self.filter.matches(row, context)
    }

    fn adjust_counts(&mut self, task: &TaskView, context: &MatchContext, delta: isize) {
        for view in View::ALL {
            if view.includes(task, context) {
                let count = &mut self.counts[view.index()];
                *count = count.saturating_add_signed(delta);
            }
        }
    }

    /// Recomputes the visible order and the view counts from scratch: after a
    /// change of view, sort or filter, a snapshot, or when time-based views move.
    pub fn rebuild(&mut self, context: &MatchContext) {
        let mut visible: Vec<&TaskRow> = self
            .rows
            .values()
            .filter(|row| self.shown(row, context))
            .collect();
        visible.sort_by(|a, b| self.order(&a.task, &b.task));
        self.visible = visible
            .into_iter()
            .map(|row| row.task.intent_id.clone())
            .collect();
        let mut counts = [0; 4];
        for row in self.rows.values() {
            for view in View::ALL {
                if view.includes(&row.task, context) {
                    counts[view.index()] += 1;
                }
            }
        }
        self.counts = counts;
    }

    /// Whether the visible set can change with the clock alone.
    pub fn depends_on_time(&self) -> bool {
        self.view == View::DueSoon || self.filter.depends_on_time()
    }

    /// Replaces everything with a snapshot, keeping seen/marked state of known tasks.
    pub fn replace_all(&mut self, tasks: Vec<TaskView>, context: &MatchContext) {
        let mut rows = HashMap::with_capacity(tasks.len());
        for task in tasks {
            let mut row = TaskRow::new(task);
            match self.rows.get(&row.task.intent_id) {
                Some(old) => {
                    row.unseen = old.unseen;
                    row.marked = old.marked;
                    row.pending = old.pending;
                }
                None => row.unseen = true,
            }
            rows.insert(row.task.intent_id.clone(), row);
        }
        self.rows = rows;
        self.rebuild(context);
    }

    /// Adds or replaces one task, keeping the visible order sorted. Returns whether
    /// the task was new.
    pub fn upsert(&mut self, task: TaskView, context: &MatchContext) -> bool {
        let mut row = TaskRow::new(task);
        let id = row.task.intent_id.clone();
        let previous = self.remove(&id, context);
        let is_new = previous.is_none();
        match previous {
            Some(old) => {
                row.marked = old.marked;
                row.pending = old.pending;
                row.unseen = old.unseen;
            }
            None => row.unseen = true,
        }
        self.adjust_counts(&row.task, context, 1);
        if self.shown(&row, context) {
            let position = self.visible.partition_point(|other| {
                self.rows
                    .get(other)
                    .is_some_and(|other| self.order(&other.task, &row.task) == Ordering::Less)
            });
            self.visible.insert(position, id.clone());
        }
        self.rows.insert(id, row);
        is_new
    }

    pub fn remove(&mut self, intent_id: &str, context: &MatchContext) -> Option<TaskRow> {
        let row = self.rows.remove(intent_id)?;
        self.adjust_counts(&row.task, context, -1);
        if let Some(position) = self.visible.iter().position(|id| id == intent_id) {
            self.visible.remove(position);
        }
        Some(row)
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::domain::{HumanTask, PrincipalKind, Status, TaskType};

    pub fn context() -> MatchContext {
        MatchContext {
            now: Timestamp::parse("2026-11-21T12:00:00Z").unwrap(),
            me: Some(
                Principal::new(
                    PrincipalKind::Reviewer,
                    "alice@example.com",
                    vec!["oncall".into()],
                )
                .unwrap(),
            ),
        }
    }

    pub fn task(id: &str, task_type: &str, title: &str, agent: &str) -> TaskView {
        let task_type = TaskType::parse(task_type).unwrap();
        TaskView {
            intent_id: id.into(),
            intent_type: "intent.human_task.v1".into(),
            status: Status::Waiting,
            from_agent: agent.into(),
            to_agent: None,
            created_at: Timestamp::parse("2026-11-21T11:00:00Z").unwrap(),
            assigned_at: None,
            due_at: None,
            human_task: HumanTask {
                title: title.into(),
                description: None,
                task_type,
                allowed_outcomes: task_type
                    .default_outcomes()
                    .iter()
                    .map(|o| o.to_string())
                    .collect(),
                // As request parsing does: overrides need a justification by default.
                required_comment: task_type == TaskType::Override,
                assignees: vec!["alice@example.com".into()],
                evidence_required: false,
                form_schema: None,
                notify_email: vec![],
                quorum: None,
            },
            reminders_sent: 0,
            escalation_stage: 0,
            assignees: vec!["alice@example.com".into()],
            votes: vec![],
        }
    }

    pub fn row(id: &str, task_type: &str, title: &str, agent: &str) -> TaskRow {
        TaskRow::new(task(id, task_type, title, agent))
    }

    fn aged(id: &str, minutes_ago: i64) -> TaskView {
        let mut t = task(id, "approval", id, "agent://a/b");
        t.created_at = context().now.plus_seconds(-60 * minutes_ago);
        t
    }

    #[test]
    fn single_upserts_keep_the_order_a_full_sort_would_give() {
        let ctx = context();
        let mut inbox = Inbox::default();
        for (id, minutes) in [("c", 5), ("a", 30), ("d", 1), ("b", 10)] {
            inbox.upsert(aged(id, minutes), &ctx);
        }
        assert_eq!(inbox.visible(), ["a", "b", "c", "d"]);
        inbox.upsert(aged("b", 60), &ctx);
        assert_eq!(inbox.visible(), ["b", "a", "c", "d"]);
        let incremental = inbox.visible().to_vec();
        inbox.rebuild(&ctx);
        assert_eq!(inbox.visible(), incremental.as_slice());
        inbox.remove("a", &ctx);
        assert_eq!(inbox.visible(), ["b", "c", "d"]);
        assert_eq!(inbox.count(View::All), 3);
    }

    #[test]
    fn sorting_by_due_puts_deadlines_first() {
        let ctx = context();
        let mut inbox = Inbox {
            sort: SortKey::Due,
            ..Inbox::default()
        };
        let mut soon = aged("soon", 1);
        soon.due_at = Some(ctx.now.plus_seconds(60));
        let mut later = aged("later", 50);
        later.due_at = Some(ctx.now.plus_seconds(6000));
        inbox.upsert(aged("none", 100), &ctx);
        inbox.upsert(later, &ctx);
        inbox.upsert(soon, &ctx);
        assert_eq!(inbox.visible(), ["soon", "later", "none"]);
        inbox.descending = true;
        inbox.rebuild(&ctx);
        assert_eq!(inbox.visible(), ["none", "later", "soon"]);
    }

    #[test]
    fn views_and_counts_follow_the_tasks() {
        let ctx = context();
        let mut inbox = Inbox::default();
        let mut escalated = aged("e", 5);
        escalated.escalation_stage = 1;
        escalated.assignees = vec!["team:backup".into()];
        let mut due = aged("d", 5);
        due.due_at = Some(ctx.now.plus_seconds(600));
        inbox.upsert(escalated, &ctx);
        inbox.upsert(due, &ctx);
        inbox.upsert(aged("plain", 5), &ctx);
        assert_eq!(
            View::ALL.map(|view| inbox.count(view)),
            [2, 1, 1, 3],
            "mine, escalated, due soon, all"
        );
        inbox.view = View::Escalated;
        inbox.rebuild(&ctx);
        assert_eq!(inbox.visible(), ["e"]);
        assert!(!inbox.depends_on_time());
        inbox.view = View::DueSoon;
        assert!(inbox.depends_on_time());
    }

    #[test]
    fn snapshots_keep_what_the_reviewer_already_saw() {
        let ctx = context();
        let mut inbox = Inbox::default();
        inbox.upsert(aged("old", 5), &ctx);
        inbox.row_mut("old").unwrap().unseen = false;
        inbox.replace_all(vec![aged("old", 5), aged("new", 1)], &ctx);
        assert!(!inbox.row("old").unwrap().unseen);
        assert!(inbox.row("new").unwrap().unseen);
        assert_eq!(inbox.len(), 2);
    }

    #[test]
    fn agent_text_is_sanitized_on_the_way_in() {
        let mut t = task("x", "approval", "Deploy\x1b]0;pwned\x07 now", "agent://a/b");
        t.human_task.description = Some("line\x1b[2J".into());
        let row = TaskRow::new(t);
        assert_eq!(row.task.human_task.title, "Deploy]0;pwned now");
        assert_eq!(row.task.human_task.description.as_deref(), Some("line[2J"));
    }
}
