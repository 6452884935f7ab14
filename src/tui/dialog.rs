//! The decision dialog: one structure for all eight task types, showing the parts
//! each type needs (outcome, form fields, assignee, evidence, comment, typed
//! confirmation). Before anything is sent the server's own rules run locally
//! (`HumanTask::validate_result`), so mistakes show inline next to the field.

use ratatui_textarea::TextArea;
use serde_json::{Map, Value, json};

use super::form::{FormField, fields_from_schema, form_data};
use super::input::LineInput;
use crate::client::ClientError;
use crate::domain::{Error, HumanTask, TaskResultInput, TaskType, TaskView, Verdict, verdict_of};

/// What an override approver must type, so that it is never one keystroke.
pub const OVERRIDE_CONFIRMATION: &str = "override";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Outcome,
    Field(usize),
    Assignee,
    Evidence,
    Comment,
    Confirmation,
}

impl Part {
    /// Parts typed into (insert mode), as opposed to picked with arrows.
    pub fn is_text(&self, dialog: &Dialog) -> bool {
        match self {
            Part::Outcome => false,
            Part::Field(index) => dialog.fields.get(*index).is_some_and(FormField::is_text),
            _ => true,
        }
    }
}

/// Errors shown next to the part they concern.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DialogErrors {
    pub general: Option<String>,
    pub comment: Option<String>,
    pub assignee: Option<String>,
    pub evidence: Option<String>,
    pub confirmation: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub intent_id: String,
    pub task: HumanTask,
    pub outcome: usize,
    pub fields: Vec<FormField>,
    pub assignee: LineInput,
    /// Highlighted assignee suggestion.
    pub completion: usize,
    pub evidence: LineInput,
    pub comment: TextArea<'static>,
    pub confirmation: LineInput,
    pub focus: usize,
    /// Typing into the focused part; `Esc` leaves it.
    pub inserting: bool,
    pub errors: DialogErrors,
}

impl Dialog {
    /// Opens the dialog for a task, preselecting the outcome with `verdict` if given.
    pub fn open(task: &TaskView, verdict: Option<Verdict>) -> Dialog {
        let human = task.human_task.clone();
        let outcome = verdict
            .and_then(|verdict| {
                human
                    .allowed_outcomes
                    .iter()
                    .position(|o| verdict_of(o) == verdict)
            })
            .unwrap_or(0);
        let fields = human
            .form_schema
            .as_ref()
            .map(fields_from_schema)
            .unwrap_or_default();
        let mut comment = TextArea::default();
        comment.set_placeholder_text(match human.task_type {
            TaskType::Override => "why this override is justified",
            TaskType::Clarification => "your answer",
            TaskType::Review => "review comments",
            _ => "optional comment",
        });
        Dialog {
            intent_id: task.intent_id.clone(),
            task: human,
            outcome,
            fields,
            assignee: LineInput::default(),
            completion: 0,
            evidence: LineInput::default(),
            comment,
            confirmation: LineInput::default(),
            focus: 0,
            inserting: false,
            errors: DialogErrors::default(),
        }
    }

    pub fn outcome(&self) -> &str {
        self.task
            .allowed_outcomes
            .get(self.outcome)
            .map(String::as_str)
            .unwrap_or_default()
    }

    fn saying_yes(&self) -> bool {
        verdict_of(self.outcome()) != Verdict::Rejecting
    }

    /// The parts on screen, in focus order.
    pub fn parts(&self) -> Vec<Part> {
        let mut parts = vec![Part::Outcome];
        if self.saying_yes() {
            parts.extend((0..self.fields.len()).map(Part::Field));
        }
        if self.task.task_type == TaskType::Assignment && self.outcome() == "assigned" {
            parts.push(Part::Assignee);
        }
        if self.task.task_type == TaskType::ManualAction || self.task.evidence_required {
            parts.push(Part::Evidence);
        }
        parts.push(Part::Comment);
        if self.needs_confirmation() {
            parts.push(Part::Confirmation);
        }
        parts
    }

    pub fn focused(&self) -> Part {
        let parts = self.parts();
        parts[self.focus.min(parts.len() - 1)]
    }

    pub fn move_focus(&mut self, delta: isize) {
        let count = self.parts().len() as isize;
        self.focus =
            (self.focus.min(count as usize - 1) as isize + delta).rem_euclid(count) as usize;
    }

    pub fn focus_part(&mut self, part: Part) {
        if let Some(index) = self.parts().iter().position(|p| *p == part) {
            self.focus = index;
        }
    }

    pub fn cycle_outcome(&mut self, delta: isize) {
        let count = self.task.allowed_outcomes.len() as isize;
        if count > 0 {
            self.outcome = (self.outcome as isize + delta).rem_euclid(count) as usize;
        }
        self.focus = 0;
    }

    /// An approving override must be confirmed by typing a word.
    pub fn needs_confirmation(&self) -> bool {
        self.task.task_type == TaskType::Override
            && verdict_of(self.outcome()) == Verdict::Approving
    }

    pub fn comment_label(&self) -> &'static str {
        match self.task.task_type {
            TaskType::Override => "Justification",
            TaskType::Clarification => "Answer",
            TaskType::Review => "Comment",
            TaskType::ManualAction => "Notes",
            _ => "Comment",
        }
    }

    pub fn comment_text(&self) -> String {
        self.comment.lines().join("\n").trim().to_string()
    }

    pub fn set_comment(&mut self, text: &str) {
        let mut comment = TextArea::new(text.lines().map(str::to_string).collect());
        comment.set_placeholder_text(self.comment.placeholder_text().to_string());
        self.comment = comment;
    }

    fn data(&self) -> Map<String, Value> {
        let mut data = if self.saying_yes() {
            form_data(&self.fields)
        } else {
            Map::new()
        };
        if self.parts().contains(&Part::Assignee) && !self.assignee.text().trim().is_empty() {
            data.insert("assignee".into(), json!(self.assignee.text().trim()));
        }
        if self.parts().contains(&Part::Evidence) && !self.evidence.text().trim().is_empty() {
            data.insert("evidence".into(), json!(self.evidence.text().trim()));
        }
        data
    }

    fn result_input(&self) -> TaskResultInput {
        let comment = self.comment_text();
        TaskResultInput {
            outcome: self.outcome().to_string(),
            comment: (!comment.is_empty()).then_some(comment),
            data: self.data(),
        }
    }

    fn clear_errors(&mut self) {
        self.errors = DialogErrors::default();
        for field in &mut self.fields {
            field.error = None;
        }
    }

    /// Checks everything the server would check, plus the typed confirmation.
    /// On success returns the body for `POST /v1/intents/{id}/resume`; on failure
    /// the errors are set next to their parts and focus moves to the first one.
    pub fn validate(&mut self) -> Option<Value> {
        self.clear_errors();
        let input = self.result_input();
        if let Err(error) = self.task.validate_result(input.clone()) {
            self.show_error(&error);
            return None;
        }
        if self.needs_confirmation() && self.confirmation.text().trim() != OVERRIDE_CONFIRMATION {
            self.errors.confirmation = Some(format!("type `{OVERRIDE_CONFIRMATION}` to confirm"));
            self.focus_part(Part::Confirmation);
            return None;
        }
        Some(
            json!({ "task_result": { "outcome": input.outcome, "comment": input.comment, "data": input.data } }),
        )
    }

    /// Places a validation error (local or from the server) next to its part.
    pub fn show_error(&mut self, error: &Error) {
        let field = error
            .details
            .get("field")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match field {
            "task_result.comment" => {
                self.errors.comment = Some(error.message.clone());
                self.focus_part(Part::Comment);
            }
            "task_result.data.evidence" => {
                self.errors.evidence = Some(error.message.clone());
                self.focus_part(Part::Evidence);
            }
            "task_result.data.assignee" => {
                self.errors.assignee = Some(error.message.clone());
                self.focus_part(Part::Assignee);
            }
            "task_result.data" => {
                let mut placed = false;
                for problem in error
                    .details
                    .get("errors")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let path = problem.get("path").and_then(Value::as_str).unwrap_or("/");
                    let message = problem
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("invalid");
                    let name = path
                        .trim_start_matches('/')
                        .split('/')
                        .next()
                        .unwrap_or_default();
                    let target = if name.is_empty() {
                        // A schema-level error such as a missing required property names it in the message.
                        self.fields
                            .iter()
                            .position(|f| message.contains(&format!("\"{}\"", f.name)))
                    } else {
                        self.fields.iter().position(|f| f.name == name)
                    };
                    if let Some(index) = target {
                        self.fields[index]
                            .error
                            .get_or_insert_with(|| message.to_string());
                        if !placed {
                            self.focus_part(Part::Field(index));
                            placed = true;
                        }
                    }
                }
                if !placed {
                    self.errors.general = Some(error.message.clone());
                }
            }
            _ => self.errors.general = Some(error.message.clone()),
        }
    }

    /// Shows a server's refusal in the dialog, keeping everything typed.
    pub fn show_server_error(&mut self, error: &ClientError) {
        self.clear_errors();
        match error {
            ClientError::Api {
                code,
                message,
                details,
                ..
            } if error.status() == Some(422) => {
                let as_domain =
                    Error::invalid("server_refused", message.clone()).with_details(details.clone());
                self.show_error(&as_domain);
                if self.errors == DialogErrors::default()
                    && self.fields.iter().all(|f| f.error.is_none())
                {
                    self.errors.general = Some(format!("{message} ({code})"));
                }
            }
            other => self.errors.general = Some(other.to_string()),
        }
    }

    /// Assignee suggestions: known reviewers containing what was typed.
    pub fn completions<'a>(&self, known: impl Iterator<Item = &'a String>) -> Vec<String> {
        let typed = self.assignee.text().trim().to_lowercase();
        known
            .filter(|name| typed.is_empty() || name.to_lowercase().contains(&typed))
            .take(6)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::inbox::tests::task;

    fn dialog(task_type: &str) -> Dialog {
        Dialog::open(&task("i1", task_type, "Do it?", "agent://a/b"), None)
    }

    #[test]
    fn each_type_shows_the_parts_it_needs() {
        assert_eq!(dialog("approval").parts(), [Part::Outcome, Part::Comment]);
        assert_eq!(dialog("review").parts(), [Part::Outcome, Part::Comment]);
        let mut override_dialog = dialog("override");
        assert_eq!(
            override_dialog.parts(),
            [Part::Outcome, Part::Comment, Part::Confirmation]
        );
        override_dialog.cycle_outcome(1);
        assert_eq!(override_dialog.outcome(), "rejected");
        assert_eq!(
            override_dialog.parts(),
            [Part::Outcome, Part::Comment],
            "no confirmation to say no"
        );
        assert_eq!(
            dialog("assignment").parts(),
            [Part::Outcome, Part::Assignee, Part::Comment]
        );
        assert_eq!(
            dialog("manual_action").parts(),
            [Part::Outcome, Part::Evidence, Part::Comment]
        );
        assert_eq!(dialog("clarification").comment_label(), "Answer");
    }

    #[test]
    fn a_preset_verdict_picks_the_matching_outcome() {
        let t = task("i1", "review", "Review", "agent://a/b");
        assert_eq!(
            Dialog::open(&t, Some(Verdict::Rejecting)).outcome(),
            "changes_requested"
        );
        assert_eq!(
            Dialog::open(&t, Some(Verdict::Approving)).outcome(),
            "approved"
        );
    }

    #[test]
    fn validation_puts_errors_next_to_their_parts() {
        let mut review = dialog("review");
        review.cycle_outcome(1);
        assert!(review.validate().is_none());
        assert!(
            review
                .errors
                .comment
                .as_deref()
                .unwrap()
                .contains("comment")
        );
        assert_eq!(review.focused(), Part::Comment);
        review.set_comment("please split the migration");
        let body = review.validate().unwrap();
        assert_eq!(body["task_result"]["outcome"], "changes_requested");
        assert_eq!(body["task_result"]["comment"], "please split the migration");
    }

    #[test]
    fn overrides_need_a_justification_and_the_typed_word() {
        let mut d = dialog("override");
        assert!(d.validate().is_none());
        assert!(d.errors.comment.is_some());
        d.set_comment("incident INC-7 requires it");
        assert!(d.validate().is_none());
        assert!(d.errors.confirmation.is_some());
        assert_eq!(d.focused(), Part::Confirmation);
        d.confirmation.set("override");
        assert!(d.validate().is_some());
    }

    #[test]
    fn form_errors_land_on_their_fields() {
        let mut t = task("f1", "form", "Deploy", "agent://a/b");
        t.human_task.form_schema = Some(json!({
            "type": "object", "required": ["replicas"],
            "properties": {"replicas": {"type": "integer", "minimum": 1}, "note": {"type": "string"}}
        }));
        let mut d = Dialog::open(&t, None);
        assert!(d.validate().is_none());
        assert!(
            d.fields[0].error.is_some(),
            "required replicas: {:?}",
            d.fields
        );
        d.fields[0].input.set("0");
        assert!(d.validate().is_none());
        assert!(
            d.fields[0].error.as_deref().unwrap().contains("minimum"),
            "{:?}",
            d.fields[0].error
        );
        d.fields[0].input.set("2");
        assert_eq!(d.validate().unwrap()["task_result"]["data"]["replicas"], 2);
        d.cycle_outcome(1);
        assert_eq!(d.outcome(), "declined");
        assert_eq!(
            d.parts(),
            [Part::Outcome, Part::Comment],
            "declining needs no form"
        );
        assert!(d.validate().is_some());
    }

    #[test]
    fn assignments_and_manual_actions_send_their_fields() {
        let mut a = dialog("assignment");
        assert!(a.validate().is_none());
        assert!(a.errors.assignee.is_some());
        a.assignee.set("bob@example.com");
        assert_eq!(
            a.validate().unwrap()["task_result"]["data"]["assignee"],
            "bob@example.com"
        );
        let known = [
            "bob@example.com".to_string(),
            "carol@example.com".to_string(),
            "team:ops".to_string(),
        ];
        a.assignee.set("CAR");
        assert_eq!(a.completions(known.iter()), ["carol@example.com"]);

        let mut t = task("m1", "manual_action", "Rotate", "agent://a/b");
        t.human_task.evidence_required = true;
        let mut m = Dialog::open(&t, None);
        assert!(m.validate().is_none());
        assert!(m.errors.evidence.is_some());
        m.evidence.set("https://ci.example.com/run/7");
        assert_eq!(
            m.validate().unwrap()["task_result"]["data"]["evidence"],
            "https://ci.example.com/run/7"
        );
    }

    #[test]
    fn server_refusals_keep_the_input() {
        let mut d = dialog("approval");
        d.set_comment("looks fine");
        d.show_server_error(&ClientError::Api {
            status: 409,
            code: "already_decided".into(),
            message: "intent i1 was already decided by bob@example.com at 12:00".into(),
            details: json!({}),
        });
        assert!(
            d.errors
                .general
                .as_deref()
                .unwrap()
                .contains("bob@example.com")
        );
        assert_eq!(d.comment_text(), "looks fine");
    }
}
