//! `[tui]` settings, validated with messages that name the key.

use crate::config::{ConfigError, TuiSection};
use crate::domain::principal::validate_assignee;

use super::keymap::KeyMap;
use super::view::theme::ThemeName;

/// The longest undo window a reviewer may configure.
const MAX_UNDO_SECONDS: u64 = 60;
const DEFAULT_UNDO_SECONDS: u64 = 5;

/// How reminders and new tasks reach the reviewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationMethod {
    /// A desktop notification when a session bus exists (and not over SSH); a
    /// terminal notification over SSH or without a desktop; the bell otherwise.
    Auto,
    Desktop,
    /// OSC 9 and OSC 777 escape sequences (wrapped for tmux).
    Terminal,
    Bell,
    Off,
}

impl NotificationMethod {
    fn parse(text: &str) -> Option<NotificationMethod> {
        match text {
            "auto" => Some(NotificationMethod::Auto),
            "desktop" => Some(NotificationMethod::Desktop),
            "terminal" => Some(NotificationMethod::Terminal),
            "bell" => Some(NotificationMethod::Bell),
            "off" => Some(NotificationMethod::Off),
            _ => None,
        }
    }
}

/// Which events raise a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyOn {
    pub assigned: bool,
    pub reminder: bool,
    pub escalated: bool,
}

#[derive(Debug, Clone)]
pub struct TuiSettings {
    pub theme: ThemeName,
    /// `NO_COLOR` is set: no colour at all, state shown by text and attributes.
    pub no_color: bool,
    pub undo_seconds: u64,
    pub mouse: bool,
    pub notifications: NotificationMethod,
    pub notify_on: NotifyOn,
    /// Extra names offered when completing an assignee.
    pub reviewers: Vec<String>,
    pub keymap: KeyMap,
}

impl Default for TuiSettings {
    fn default() -> Self {
        TuiSettings {
            theme: ThemeName::Dark,
            no_color: false,
            undo_seconds: DEFAULT_UNDO_SECONDS,
            mouse: false,
            notifications: NotificationMethod::Auto,
            notify_on: NotifyOn {
                assigned: true,
                reminder: true,
                escalated: true,
            },
            reviewers: vec![],
            keymap: KeyMap::default(),
        }
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

impl TuiSettings {
    pub fn resolve(section: &TuiSection, no_color: bool) -> Result<TuiSettings, ConfigError> {
        let defaults = TuiSettings::default();
        let theme = match &section.theme {
            None => defaults.theme,
            Some(name) => ThemeName::parse(name).ok_or_else(|| {
                invalid(
                    "tui.theme",
                    format!("`{name}` is not one of: dark, light, high-contrast"),
                )
            })?,
        };
        let undo_seconds = section.undo_seconds.unwrap_or(defaults.undo_seconds);
        if undo_seconds > MAX_UNDO_SECONDS {
            return Err(invalid(
                "tui.undo_seconds",
                format!("{undo_seconds} is too long; use 0 to {MAX_UNDO_SECONDS}"),
            ));
        }
        let notifications = match &section.notifications {
            None => defaults.notifications,
            Some(name) => NotificationMethod::parse(name).ok_or_else(|| {
                invalid(
                    "tui.notifications",
                    format!("`{name}` is not one of: auto, desktop, terminal, bell, off"),
                )
            })?,
        };
        let notify_on = match &section.notify_on {
            None => defaults.notify_on,
            Some(events) => {
                let mut notify_on = NotifyOn {
                    assigned: false,
                    reminder: false,
                    escalated: false,
                };
                for event in events {
                    match event.as_str() {
                        "assigned" => notify_on.assigned = true,
                        "reminder" => notify_on.reminder = true,
                        "escalated" => notify_on.escalated = true,
                        other => {
                            return Err(invalid(
                                "tui.notify_on",
                                format!("`{other}` is not one of: assigned, reminder, escalated"),
                            ));
                        }
                    }
                }
                notify_on
            }
        };
        let reviewers = section.reviewers.clone().unwrap_or_default();
        for reviewer in &reviewers {
            validate_assignee("tui.reviewers", reviewer)
                .map_err(|err| invalid("tui.reviewers", err.message))?;
        }
        let keymap =
            KeyMap::with_overrides(&section.keys).map_err(|why| invalid("tui.keys", why))?;
        Ok(TuiSettings {
            theme,
            no_color,
            undo_seconds,
            mouse: section.mouse.unwrap_or(defaults.mouse),
            notifications,
            notify_on,
            reviewers,
            keymap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> TuiSection {
        let file: crate::config::FileConfig = toml::from_str(text).unwrap();
        file.tui
    }

    #[test]
    fn valid_settings_resolve() {
        let settings = TuiSettings::resolve(
            &section("[tui]\ntheme = \"light\"\nundo_seconds = 0\nmouse = true\nnotifications = \"bell\"\nnotify_on = [\"reminder\"]\n[tui.keys]\napprove = [\"Y\"]\n"),
            false,
        )
        .unwrap();
        assert_eq!(settings.theme, ThemeName::Light);
        assert_eq!(settings.undo_seconds, 0);
        assert!(settings.mouse);
        assert_eq!(settings.notifications, NotificationMethod::Bell);
        assert!(settings.notify_on.reminder && !settings.notify_on.assigned);
        assert_eq!(
            settings
                .keymap
                .keys_for(super::super::keymap::Command::Approve),
            ["Y"]
        );
    }

    #[test]
    fn every_bad_value_names_its_key() {
        for (text, key) in [
            ("[tui]\ntheme = \"neon\"\n", "tui.theme"),
            ("[tui]\nundo_seconds = 600\n", "tui.undo_seconds"),
            ("[tui]\nnotifications = \"pigeon\"\n", "tui.notifications"),
            ("[tui]\nnotify_on = [\"lunch\"]\n", "tui.notify_on"),
            ("[tui]\nreviewers = [\"has space\"]\n", "tui.reviewers"),
            ("[tui.keys]\nfly = [\"f\"]\n", "tui.keys"),
        ] {
            let err = TuiSettings::resolve(&section(text), false)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
