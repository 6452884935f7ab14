//! A form built from a task's JSON Schema: one field per top-level property, typed
//! by the schema (string, number, integer, boolean, enum), required ones first.
//! Validation is the server's own (`HumanTask::validate_result`), run before
//! submitting, so errors show inline and match what the server would say.

use serde_json::{Map, Value};

use super::input::LineInput;
use super::text::sanitize_line;

#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    Text,
    Number,
    Integer,
    Boolean,
    /// An enum; the first option is "(none)" when the field is optional.
    Choice(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FormField {
    pub name: String,
    pub label: String,
    pub help: Option<String>,
    pub kind: FieldKind,
    pub required: bool,
    pub input: LineInput,
    pub checked: bool,
    pub choice: usize,
    pub error: Option<String>,
}

fn kind_of(property: &Value) -> FieldKind {
    if let Some(options) = property.get("enum").and_then(Value::as_array) {
        return FieldKind::Choice(options.clone());
    }
    let declared = match property.get("type") {
        Some(Value::String(name)) => name.as_str(),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|name| *name != "null")
            .unwrap_or("string"),
        _ => "string",
    };
    match declared {
        "number" => FieldKind::Number,
        "integer" => FieldKind::Integer,
        "boolean" => FieldKind::Boolean,
        _ => FieldKind::Text,
    }
}

/// Text shown for an enum option.
pub fn option_label(option: &Value) -> String {
    match option {
        Value::String(text) => sanitize_line(text),
        other => other.to_string(),
    }
}

pub fn fields_from_schema(schema: &Value) -> Vec<FormField> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return vec![];
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut names: Vec<&String> = properties.keys().collect();
    // Required fields first, in the order the schema lists them; then the rest.
    names.sort_by_key(|name| {
        required
            .iter()
            .position(|r| r == name)
            .unwrap_or(usize::MAX)
    });
    names
        .into_iter()
        .map(|name| {
            let property = &properties[name];
            let kind = kind_of(property);
            let is_required = required.contains(&name.as_str());
            let default = property.get("default");
            let mut field = FormField {
                name: name.clone(),
                label: sanitize_line(
                    property
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or(name),
                ),
                help: property
                    .get("description")
                    .and_then(Value::as_str)
                    .map(sanitize_line),
                kind: kind.clone(),
                required: is_required,
                input: LineInput::default(),
                checked: default.and_then(Value::as_bool).unwrap_or(false),
                choice: 0,
                error: None,
            };
            if let FieldKind::Choice(options) = &kind {
                let offset = usize::from(!is_required);
                field.choice = default
                    .and_then(|d| options.iter().position(|o| o == d))
                    .map_or(0, |index| index + offset);
            } else if let Some(default) = default.filter(|d| !d.is_boolean()) {
                field.input = LineInput::new(&match default {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                });
            }
            field
        })
        .collect()
}

impl FormField {
    /// How many options ←/→ cycle through (0 for free text).
    pub fn option_count(&self) -> usize {
        match &self.kind {
            FieldKind::Choice(options) => options.len() + usize::from(!self.required),
            FieldKind::Boolean => 2,
            _ => 0,
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(
            self.kind,
            FieldKind::Text | FieldKind::Number | FieldKind::Integer
        )
    }

    /// Steps an enum or a boolean by `delta`.
    pub fn cycle(&mut self, delta: isize) {
        match self.kind {
            FieldKind::Boolean => self.checked = !self.checked,
            FieldKind::Choice(_) => {
                let count = self.option_count() as isize;
                if count > 0 {
                    self.choice = (self.choice as isize + delta).rem_euclid(count) as usize;
                }
            }
            _ => {}
        }
    }

    /// The value to submit; `None` leaves the field out. Numbers that do not parse
    /// are sent as text so the schema check names the field.
    pub fn value(&self) -> Option<Value> {
        let text = self.input.text().trim();
        match &self.kind {
            FieldKind::Boolean => Some(Value::Bool(self.checked)),
            FieldKind::Choice(options) => {
                let offset = usize::from(!self.required);
                self.choice
                    .checked_sub(offset)
                    .and_then(|index| options.get(index))
                    .cloned()
            }
            _ if text.is_empty() => None,
            FieldKind::Integer => Some(
                text.parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(text.into())),
            ),
            FieldKind::Number => Some(
                text.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::String(text.into())),
            ),
            FieldKind::Text => Some(Value::String(text.to_string())),
        }
    }

    /// The value as the dialog shows it.
    pub fn display(&self) -> String {
        match &self.kind {
            FieldKind::Boolean => if self.checked { "[x] yes" } else { "[ ] no" }.to_string(),
            FieldKind::Choice(options) => {
                let offset = usize::from(!self.required);
                match self
                    .choice
                    .checked_sub(offset)
                    .and_then(|index| options.get(index))
                {
                    Some(option) => format!("‹ {} ›", option_label(option)),
                    None => "‹ (none) ›".to_string(),
                }
            }
            _ => self.input.text().to_string(),
        }
    }
}

pub fn form_data(fields: &[FormField]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|field| field.value().map(|value| (field.name.clone(), value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["region", "replicas"],
            "properties": {
                "canary": {"type": "boolean", "default": true},
                "notes": {"type": "string", "title": "Release notes"},
                "region": {"type": "string", "enum": ["eu", "us"]},
                "replicas": {"type": "integer", "minimum": 1},
                "ratio": {"type": ["number", "null"]},
                "tier": {"enum": ["gold", "silver"]}
            }
        })
    }

    #[test]
    fn fields_follow_the_schema() {
        let fields = fields_from_schema(&schema());
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["region", "replicas", "canary", "notes", "ratio", "tier"]
        );
        assert_eq!(
            fields[0].kind,
            FieldKind::Choice(vec![json!("eu"), json!("us")])
        );
        assert_eq!(fields[1].kind, FieldKind::Integer);
        assert!(fields[2].checked, "defaults apply");
        assert_eq!(fields[3].label, "Release notes");
        assert_eq!(fields[4].kind, FieldKind::Number);
        assert_eq!(
            fields[5].option_count(),
            3,
            "optional enums can be left unset"
        );
    }

    #[test]
    fn values_are_typed_and_unparsable_numbers_stay_text() {
        let mut fields = fields_from_schema(&schema());
        fields[0].cycle(1);
        fields[1].input.set("3");
        fields[4].input.set("abc");
        let data = form_data(&fields);
        assert_eq!(data["region"], "us");
        assert_eq!(data["replicas"], 3);
        assert_eq!(data["canary"], true);
        assert_eq!(data["ratio"], "abc");
        assert!(!data.contains_key("notes") && !data.contains_key("tier"));
        fields[5].cycle(-1);
        assert_eq!(fields[5].display(), "‹ silver ›");
    }
}
