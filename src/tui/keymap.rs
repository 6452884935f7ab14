//! Commands and the keys that trigger them. The defaults follow the conventions of
//! k9s, lazygit and gitui (vim keys and arrows); every binding can be replaced in
//! `config.toml` under `[tui.keys]`. The help overlay is built from this map, so it
//! always shows the keys actually in effect.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    Quit,
    Help,
    Filter,
    Palette,
    MoveDown,
    MoveUp,
    Top,
    Bottom,
    PageDown,
    PageUp,
    HalfPageDown,
    HalfPageUp,
    Open,
    Approve,
    Reject,
    Zoom,
    NextView,
    PreviousView,
    ViewMine,
    ViewEscalated,
    ViewDueSoon,
    ViewAll,
    CycleSort,
    ReverseSort,
    Mark,
    BulkApprove,
    Undo,
    CopyId,
    DetailDown,
    DetailUp,
}

impl Command {
    pub const ALL: [Command; 30] = [
        Command::Quit,
        Command::Help,
        Command::Filter,
        Command::Palette,
        Command::MoveDown,
        Command::MoveUp,
        Command::Top,
        Command::Bottom,
        Command::PageDown,
        Command::PageUp,
        Command::HalfPageDown,
        Command::HalfPageUp,
        Command::Open,
        Command::Approve,
        Command::Reject,
        Command::Zoom,
        Command::NextView,
        Command::PreviousView,
        Command::ViewMine,
        Command::ViewEscalated,
        Command::ViewDueSoon,
        Command::ViewAll,
        Command::CycleSort,
        Command::ReverseSort,
        Command::Mark,
        Command::BulkApprove,
        Command::Undo,
        Command::CopyId,
        Command::DetailDown,
        Command::DetailUp,
    ];

    /// The name used in `[tui.keys]`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Quit => "quit",
            Command::Help => "help",
            Command::Filter => "filter",
            Command::Palette => "palette",
            Command::MoveDown => "move_down",
            Command::MoveUp => "move_up",
            Command::Top => "top",
            Command::Bottom => "bottom",
            Command::PageDown => "page_down",
            Command::PageUp => "page_up",
            Command::HalfPageDown => "half_page_down",
            Command::HalfPageUp => "half_page_up",
            Command::Open => "open",
            Command::Approve => "approve",
            Command::Reject => "reject",
            Command::Zoom => "zoom",
            Command::NextView => "next_view",
            Command::PreviousView => "previous_view",
            Command::ViewMine => "view_mine",
            Command::ViewEscalated => "view_escalated",
            Command::ViewDueSoon => "view_due_soon",
            Command::ViewAll => "view_all",
            Command::CycleSort => "cycle_sort",
            Command::ReverseSort => "reverse_sort",
            Command::Mark => "mark",
            Command::BulkApprove => "bulk_approve",
            Command::Undo => "undo",
            Command::CopyId => "copy_id",
            Command::DetailDown => "detail_down",
            Command::DetailUp => "detail_up",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            Command::Quit => "quit",
            Command::Help => "this help",
            Command::Filter => "filter (type:review agent:x due<30m text)",
            Command::Palette => "command palette",
            Command::MoveDown => "next task",
            Command::MoveUp => "previous task",
            Command::Top => "first task",
            Command::Bottom => "last task",
            Command::PageDown => "page down",
            Command::PageUp => "page up",
            Command::HalfPageDown => "half a page down",
            Command::HalfPageUp => "half a page up",
            Command::Open => "open the decision dialog",
            Command::Approve => "decide with the task's yes",
            Command::Reject => "decide with the task's no",
            Command::Zoom => "zoom the detail pane",
            Command::NextView => "next view tab",
            Command::PreviousView => "previous view tab",
            Command::ViewMine => "view: mine",
            Command::ViewEscalated => "view: escalated",
            Command::ViewDueSoon => "view: due soon",
            Command::ViewAll => "view: all",
            Command::CycleSort => "sort by age / due / type / agent",
            Command::ReverseSort => "reverse the sort",
            Command::Mark => "mark for bulk approval",
            Command::BulkApprove => "approve all marked (asks first)",
            Command::Undo => "undo the last decision before it is sent",
            Command::CopyId => "copy the task id (OSC 52)",
            Command::DetailDown => "scroll the detail down",
            Command::DetailUp => "scroll the detail up",
        }
    }

    fn default_keys(&self) -> &'static [&'static str] {
        match self {
            Command::Quit => &["q"],
            Command::Help => &["?", "f1"],
            Command::Filter => &["/"],
            Command::Palette => &[":"],
            Command::MoveDown => &["j", "down"],
            Command::MoveUp => &["k", "up"],
            Command::Top => &["g g", "home"],
            Command::Bottom => &["G", "end"],
            Command::PageDown => &["pagedown", "ctrl-f"],
            Command::PageUp => &["pageup", "ctrl-b"],
            Command::HalfPageDown => &["ctrl-d"],
            Command::HalfPageUp => &["ctrl-u"],
            Command::Open => &["enter"],
            Command::Approve => &["a"],
            Command::Reject => &["r"],
            Command::Zoom => &["z"],
            Command::NextView => &["tab", "]"],
            Command::PreviousView => &["backtab", "["],
            Command::ViewMine => &["1"],
            Command::ViewEscalated => &["2"],
            Command::ViewDueSoon => &["3"],
            Command::ViewAll => &["4"],
            Command::CycleSort => &["s"],
            Command::ReverseSort => &["S"],
            Command::Mark => &["space"],
            Command::BulkApprove => &["A"],
            Command::Undo => &["u"],
            Command::CopyId => &["y"],
            Command::DetailDown => &["J"],
            Command::DetailUp => &["K"],
        }
    }

    pub fn parse(name: &str) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|command| command.name() == name)
    }
}

/// A key with its modifiers, normalised so that `G` and `shift-g` are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl Key {
    pub fn from_event(event: &KeyEvent) -> Key {
        let mut modifiers =
            event.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        // The character (or BackTab) already says whether shift was held.
        if matches!(event.code, KeyCode::Char(_) | KeyCode::BackTab) {
            modifiers.remove(KeyModifiers::SHIFT);
        }
        Key {
            code: event.code,
            modifiers,
        }
    }

    pub fn parse(text: &str) -> Result<Key, String> {
        let mut modifiers = KeyModifiers::NONE;
        let mut rest = text;
        loop {
            if let Some(after) = rest
                .strip_prefix("ctrl-")
                .or_else(|| rest.strip_prefix("c-"))
            {
                modifiers |= KeyModifiers::CONTROL;
                rest = after;
            } else if let Some(after) = rest
                .strip_prefix("alt-")
                .or_else(|| rest.strip_prefix("m-"))
            {
                modifiers |= KeyModifiers::ALT;
                rest = after;
            } else {
                break;
            }
        }
        let code = match rest {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" | "shift-tab" => KeyCode::BackTab,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "backspace" => KeyCode::Backspace,
            "delete" => KeyCode::Delete,
            "insert" => KeyCode::Insert,
            function if function.len() > 1 && function.starts_with('f') => {
                let number: u8 = function[1..]
                    .parse()
                    .map_err(|_| format!("`{text}` is not a key"))?;
                if !(1..=12).contains(&number) {
                    return Err(format!("`{text}`: function keys are f1 to f12"));
                }
                KeyCode::F(number)
            }
            single => {
                let mut chars = single.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(if modifiers.is_empty() {
                        c
                    } else {
                        c.to_ascii_lowercase()
                    }),
                    _ => {
                        return Err(format!(
                            "`{text}` is not a key (try j, ctrl-d, enter, f1, space)"
                        ));
                    }
                }
            }
        };
        Ok(Key { code, modifiers })
    }

    pub fn label(&self) -> String {
        let mut label = String::new();
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            label.push_str("ctrl-");
        }
        if self.modifiers.contains(KeyModifiers::ALT) {
            label.push_str("alt-");
        }
        let name = match self.code {
            KeyCode::Enter => "enter".to_string(),
            KeyCode::Esc => "esc".to_string(),
            KeyCode::Tab => "tab".to_string(),
            KeyCode::BackTab => "shift-tab".to_string(),
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Up => "↑".to_string(),
            KeyCode::Down => "↓".to_string(),
            KeyCode::Left => "←".to_string(),
            KeyCode::Right => "→".to_string(),
            KeyCode::Home => "home".to_string(),
            KeyCode::End => "end".to_string(),
            KeyCode::PageUp => "pgup".to_string(),
            KeyCode::PageDown => "pgdn".to_string(),
            KeyCode::Backspace => "backspace".to_string(),
            KeyCode::Delete => "delete".to_string(),
            KeyCode::Insert => "insert".to_string(),
            KeyCode::F(number) => format!("f{number}"),
            KeyCode::Char(c) => c.to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        label.push_str(&name);
        label
    }
}

fn parse_sequence(text: &str) -> Result<Vec<Key>, String> {
    let keys: Vec<Key> = text
        .split_whitespace()
        .map(Key::parse)
        .collect::<Result<_, _>>()?;
    if keys.is_empty() {
        return Err("an empty key binding".to_string());
    }
    Ok(keys)
}

/// The outcome of a key press in normal mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Run(Command),
    /// The keys so far start a longer binding; wait for the next one.
    Prefix,
    Unbound,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyMap {
    bindings: Vec<(Vec<Key>, Command)>,
}

impl Default for KeyMap {
    fn default() -> Self {
        let mut bindings = Vec::new();
        for command in Command::ALL {
            for keys in command.default_keys() {
                if let Ok(sequence) = parse_sequence(keys) {
                    bindings.push((sequence, command));
                }
            }
        }
        KeyMap { bindings }
    }
}

impl KeyMap {
    /// The defaults with some commands rebound: each named command gets exactly
    /// the keys listed for it.
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Result<KeyMap, String> {
        let mut map = KeyMap::default();
        for (name, keys) in overrides {
            let command = Command::parse(name).ok_or_else(|| {
                format!(
                    "tui.keys.{name}: no such command; commands are {}",
                    Command::ALL.map(|c| c.name()).join(", ")
                )
            })?;
            map.bindings.retain(|(_, bound)| *bound != command);
            for text in keys {
                let sequence =
                    parse_sequence(text).map_err(|why| format!("tui.keys.{name}: {why}"))?;
                map.bindings.push((sequence, command));
            }
        }
        map.check_conflicts()?;
        Ok(map)
    }

    fn check_conflicts(&self) -> Result<(), String> {
        for (index, (keys, command)) in self.bindings.iter().enumerate() {
            for (other_keys, other) in &self.bindings[index + 1..] {
                let shorter = keys.len().min(other_keys.len());
                if keys[..shorter] == other_keys[..shorter] && command != other {
                    let label =
                        |keys: &[Key]| keys.iter().map(Key::label).collect::<Vec<_>>().join(" ");
                    return Err(format!(
                        "tui.keys: `{}` ({}) and `{}` ({}) collide",
                        label(keys),
                        command.name(),
                        label(other_keys),
                        other.name()
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn resolve(&self, pending: &[Key], key: Key) -> Resolution {
        let mut typed = pending.to_vec();
        typed.push(key);
        if let Some((_, command)) = self.bindings.iter().find(|(keys, _)| *keys == typed) {
            return Resolution::Run(*command);
        }
        if self
            .bindings
            .iter()
            .any(|(keys, _)| keys.starts_with(&typed))
        {
            return Resolution::Prefix;
        }
        Resolution::Unbound
    }

    /// The keys bound to a command, as the help shows them (`g g`, `ctrl-d`).
    pub fn keys_for(&self, command: Command) -> Vec<String> {
        self.bindings
            .iter()
            .filter(|(_, bound)| *bound == command)
            .map(|(keys, _)| keys.iter().map(Key::label).collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// The first key for a command, for compact hints in the status bar.
    pub fn hint(&self, command: Command) -> String {
        self.keys_for(command)
            .into_iter()
            .next()
            .unwrap_or_else(|| "unbound".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Key {
        Key::from_event(&KeyEvent::new(code, modifiers))
    }

    #[test]
    fn vim_keys_arrows_and_sequences_resolve() {
        let map = KeyMap::default();
        let g = press(KeyCode::Char('g'), KeyModifiers::NONE);
        assert_eq!(
            map.resolve(&[], press(KeyCode::Char('j'), KeyModifiers::NONE)),
            Resolution::Run(Command::MoveDown)
        );
        assert_eq!(
            map.resolve(&[], press(KeyCode::Down, KeyModifiers::NONE)),
            Resolution::Run(Command::MoveDown)
        );
        assert_eq!(map.resolve(&[], g), Resolution::Prefix);
        assert_eq!(map.resolve(&[g], g), Resolution::Run(Command::Top));
        assert_eq!(
            map.resolve(&[], press(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Resolution::Run(Command::Bottom)
        );
        assert_eq!(
            map.resolve(&[], press(KeyCode::Char('d'), KeyModifiers::CONTROL)),
            Resolution::Run(Command::HalfPageDown)
        );
        assert_eq!(
            map.resolve(&[], press(KeyCode::F(1), KeyModifiers::NONE)),
            Resolution::Run(Command::Help)
        );
        assert_eq!(
            map.resolve(&[], press(KeyCode::Char('x'), KeyModifiers::NONE)),
            Resolution::Unbound
        );
    }

    #[test]
    fn overrides_replace_a_commands_keys() {
        let overrides = BTreeMap::from([(
            "approve".to_string(),
            vec!["Y".to_string(), "ctrl-a".to_string()],
        )]);
        let map = KeyMap::with_overrides(&overrides).unwrap();
        assert_eq!(map.keys_for(Command::Approve), ["Y", "ctrl-a"]);
        assert_eq!(
            map.resolve(&[], press(KeyCode::Char('a'), KeyModifiers::NONE)),
            Resolution::Unbound
        );
        assert_eq!(
            map.resolve(&[], press(KeyCode::Char('Y'), KeyModifiers::SHIFT)),
            Resolution::Run(Command::Approve)
        );
    }

    #[test]
    fn bad_overrides_are_explained() {
        let unknown = BTreeMap::from([("fly".to_string(), vec!["f".to_string()])]);
        assert!(
            KeyMap::with_overrides(&unknown)
                .unwrap_err()
                .contains("no such command")
        );
        let bad_key = BTreeMap::from([("quit".to_string(), vec!["hyper-q".to_string()])]);
        assert!(
            KeyMap::with_overrides(&bad_key)
                .unwrap_err()
                .contains("tui.keys.quit")
        );
        let collision = BTreeMap::from([("quit".to_string(), vec!["j".to_string()])]);
        assert!(
            KeyMap::with_overrides(&collision)
                .unwrap_err()
                .contains("collide")
        );
        let prefix = BTreeMap::from([("quit".to_string(), vec!["g".to_string()])]);
        assert!(
            KeyMap::with_overrides(&prefix)
                .unwrap_err()
                .contains("collide")
        );
        assert!(Key::parse("f13").is_err());
        assert!(Key::parse("").is_err());
    }

    #[test]
    fn every_command_has_a_default_key_and_they_do_not_collide() {
        let map = KeyMap::default();
        map.check_conflicts().unwrap();
        for command in Command::ALL {
            assert!(!map.keys_for(command).is_empty(), "{command:?}");
            assert_eq!(Command::parse(command.name()), Some(command));
        }
    }
}
