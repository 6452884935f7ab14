//! The `/` filter: a small query language over the inbox.
//!
//! `type:review agent:deploy due<30m urgent` keeps reviews from agents whose address
//! contains "deploy", due within 30 minutes, mentioning "urgent". Terms:
//! - `type:T`, `agent:A`, `assignee:NAME` (`assignee:me`), `title:W`
//! - `is:unseen`, `is:escalated`, `is:overdue`, `is:marked`
//! - `due<30m`, `due>1h`, `age>2h`, `stage>=1`, `reminders>0` (`<`, `<=`, `>`, `>=`, `=`)
//! - anything else is free text, matched against title, description, agent and id
//! - a leading `-` negates a term; `"quoted words"` are one term.

use super::inbox::{MatchContext, TaskRow};
use crate::domain::time::parse_duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Type,
    Agent,
    Assignee,
    Title,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Unseen,
    Escalated,
    Overdue,
    Marked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    /// Seconds until the deadline (negative when overdue).
    Due,
    /// Seconds since the task was created.
    Age,
    Stage,
    Reminders,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Field(Field, String),
    Is(Flag),
    Compare(Metric, Op, i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    test: Test,
    negated: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// What the user typed.
    pub text: String,
    terms: Vec<Term>,
    /// Why part of the query was not understood; the understood terms still apply.
    pub error: Option<String>,
}

/// Splits on whitespace, keeping `"quoted phrases"` together.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn parse_comparison(word: &str) -> Option<Result<Test, String>> {
    let position = word.find(['<', '>', '='])?;
    let (name, rest) = word.split_at(position);
    let metric = match name {
        "due" => Metric::Due,
        "age" => Metric::Age,
        "stage" => Metric::Stage,
        "reminders" => Metric::Reminders,
        _ => return None,
    };
    let (op, value) = if let Some(value) = rest.strip_prefix("<=") {
        (Op::LessOrEqual, value)
    } else if let Some(value) = rest.strip_prefix(">=") {
        (Op::GreaterOrEqual, value)
    } else if let Some(value) = rest.strip_prefix('<') {
        (Op::Less, value)
    } else if let Some(value) = rest.strip_prefix('>') {
        (Op::Greater, value)
    } else {
        (Op::Equal, rest.trim_start_matches('='))
    };
    let amount = match metric {
        Metric::Due | Metric::Age => parse_duration(value),
        Metric::Stage | Metric::Reminders => value.parse().ok(),
    };
    Some(match amount {
        Some(amount) => Ok(Test::Compare(metric, op, amount)),
        None => Err(format!(
            "`{word}`: `{value}` is not a number or a duration like 30m"
        )),
    })
}

fn parse_term(word: &str) -> Result<Test, String> {
    if let Some(comparison) = parse_comparison(word) {
        return comparison;
    }
    let Some((key, value)) = word.split_once(':') else {
        return Ok(Test::Text(word.to_lowercase()));
    };
    let value = value.to_lowercase();
    if value.is_empty() {
        return Err(format!("`{word}` needs a value after `:`"));
    }
    let field = match key {
        "type" => Field::Type,
        "agent" | "from" => Field::Agent,
        "assignee" => Field::Assignee,
        "title" => Field::Title,
        "is" => {
            let flag = match value.as_str() {
                "unseen" | "new" => Flag::Unseen,
                "escalated" => Flag::Escalated,
                "overdue" => Flag::Overdue,
                "marked" => Flag::Marked,
                other => {
                    return Err(format!(
                        "`is:{other}`: use is:unseen, is:escalated, is:overdue or is:marked"
                    ));
                }
            };
            return Ok(Test::Is(flag));
        }
        other => {
            return Err(format!(
                "unknown filter `{other}:`; use type, agent, assignee, title, is, due, age, stage or reminders"
            ));
        }
    };
    Ok(Test::Field(field, value))
}

fn compare(value: i64, op: Op, bound: i64) -> bool {
    match op {
        Op::Less => value < bound,
        Op::LessOrEqual => value <= bound,
        Op::Greater => value > bound,
        Op::GreaterOrEqual => value >= bound,
        Op::Equal => value == bound,
    }
}

impl Filter {
    pub fn parse(text: &str) -> Filter {
        let mut terms = Vec::new();
        let mut errors = Vec::new();
        for word in words(text) {
            let (negated, body) = match word.strip_prefix('-').or_else(|| word.strip_prefix('!')) {
                Some(body) if !body.is_empty() => (true, body),
                _ => (false, word.as_str()),
            };
            match parse_term(body) {
                Ok(test) => terms.push(Term { test, negated }),
                Err(error) => errors.push(error),
            }
        }
        Filter {
            text: text.to_string(),
            terms,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the result can change with the clock alone.
    pub fn depends_on_time(&self) -> bool {
        self.terms.iter().any(|term| {
            matches!(
                term.test,
                Test::Compare(Metric::Due | Metric::Age, _, _) | Test::Is(Flag::Overdue)
            )
        })
    }

    pub fn matches(&self, row: &TaskRow, context: &MatchContext) -> bool {
        self.terms
            .iter()
            .all(|term| term.negated != Self::test(&term.test, row, context))
    }

    fn test(test: &Test, row: &TaskRow, context: &MatchContext) -> bool {
        let task = &row.task;
        match test {
            Test::Text(words) => row.search_text.contains(words.as_str()),
            Test::Field(Field::Type, value) => task
                .human_task
                .task_type
                .as_str()
                .starts_with(value.as_str()),
            Test::Field(Field::Agent, value) => {
                task.from_agent.to_lowercase().contains(value.as_str())
            }
            Test::Field(Field::Title, value) => task
                .human_task
                .title
                .to_lowercase()
                .contains(value.as_str()),
            Test::Field(Field::Assignee, value) if value == "me" => context.is_mine(task),
            Test::Field(Field::Assignee, value) => task
                .assignees
                .iter()
                .any(|assignee| assignee.to_lowercase().contains(value.as_str())),
            Test::Is(Flag::Unseen) => row.unseen,
            Test::Is(Flag::Marked) => row.marked,
            Test::Is(Flag::Escalated) => task.escalation_stage > 0,
            Test::Is(Flag::Overdue) => task
                .due_at
                .is_some_and(|due| context.now.seconds_until(&due) < 0),
            Test::Compare(metric, op, bound) => {
                let value = match metric {
                    Metric::Due => match task.due_at {
                        Some(due) => context.now.seconds_until(&due),
                        None => return false,
                    },
                    Metric::Age => task.created_at.seconds_until(&context.now),
                    Metric::Stage => i64::from(task.escalation_stage),
                    Metric::Reminders => i64::from(task.reminders_sent),
                };
                compare(value, *op, *bound)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::inbox::tests::{context, row};

    #[test]
    fn the_documented_example_works() {
        let filter = Filter::parse("type:review agent:deploy due<30m urgent");
        assert!(filter.error.is_none());
        let ctx = context();
        let mut hit = row(
            "r1",
            "review",
            "Urgent: review the deploy plan",
            "agent://acme/deployer",
        );
        hit.task.due_at = Some(ctx.now.plus_seconds(600));
        assert!(filter.matches(&hit, &ctx));
        let mut late = hit.clone();
        late.task.due_at = Some(ctx.now.plus_seconds(3600));
        assert!(
            !filter.matches(&late, &ctx),
            "due in an hour is not due<30m"
        );
        let mut wrong_type = hit.clone();
        wrong_type.task.human_task.task_type = crate::domain::TaskType::Approval;
        assert!(!filter.matches(&wrong_type, &ctx));
        assert!(filter.depends_on_time());
    }

    #[test]
    fn negation_quotes_and_flags() {
        let ctx = context();
        let mut task = row(
            "a1",
            "approval",
            "Rotate the prod keys",
            "agent://sec/scanner",
        );
        task.unseen = true;
        assert!(Filter::parse("\"prod keys\"").matches(&task, &ctx));
        assert!(!Filter::parse("-\"prod keys\"").matches(&task, &ctx));
        assert!(Filter::parse("is:unseen -type:review").matches(&task, &ctx));
        assert!(!Filter::parse("is:escalated").matches(&task, &ctx));
        task.task.escalation_stage = 2;
        assert!(Filter::parse("stage>=2 is:escalated").matches(&task, &ctx));
        assert!(Filter::parse("assignee:me").matches(&task, &ctx));
    }

    #[test]
    fn bad_terms_are_explained_and_the_rest_still_applies() {
        let filter = Filter::parse("colour:red due<soon keys");
        let error = filter.error.clone().unwrap();
        assert!(
            error.contains("colour") && error.contains("soon"),
            "{error}"
        );
        let ctx = context();
        assert!(filter.matches(&row("a", "approval", "Rotate keys", "agent://x/y"), &ctx));
        assert!(!filter.matches(&row("b", "approval", "Other", "agent://x/y"), &ctx));
        assert!(Filter::parse("").is_empty());
        assert!(Filter::parse("is:").error.is_some());
        assert!(Filter::parse("is:weird").error.is_some());
    }
}
