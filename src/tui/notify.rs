//! Reviewer notifications, best effort: a desktop notification when a session bus
//! exists; a terminal notification (OSC 9 or OSC 777, wrapped for tmux) over SSH or
//! without a desktop; the bell when the terminal is not known to show either.
//! Nothing here can fail the inbox: every error is logged and the next channel
//! tried.

use std::io::Write;

use base64::Engine as _;

use super::settings::NotificationMethod;
use super::text::sanitize_line;

/// Where a notification can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Desktop,
    /// `OSC 9 ; text`: iTerm2, WezTerm, kitty, Windows Terminal, ghostty.
    Osc9,
    /// `OSC 777 ; notify ; title ; body`: VTE terminals (GNOME Terminal, Tilix), urxvt, foot.
    Osc777,
    Bell,
}

/// What the environment says about the reviewer's session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    pub session_bus: bool,
    pub ssh: bool,
    pub tmux: bool,
    /// The terminal's notification escape, when it is known to have one.
    pub terminal_escape: Option<Channel>,
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|value| !value.is_empty())
}

impl Environment {
    pub fn detect() -> Environment {
        let program = std::env::var("TERM_PROGRAM").unwrap_or_default();
        let lc_terminal = std::env::var("LC_TERMINAL").unwrap_or_default();
        let term = std::env::var("TERM").unwrap_or_default();
        let terminal_escape =
            if env_set("VTE_VERSION") || term.contains("rxvt") || term.starts_with("foot") {
                Some(Channel::Osc777)
            } else if matches!(
                program.as_str(),
                "iTerm.app" | "WezTerm" | "ghostty" | "vscode"
            ) || lc_terminal == "iTerm2"
                || env_set("KITTY_WINDOW_ID")
                || env_set("WT_SESSION")
                || term == "xterm-kitty"
                || term == "xterm-ghostty"
            {
                Some(Channel::Osc9)
            } else {
                None
            };
        Environment {
            session_bus: env_set("DBUS_SESSION_BUS_ADDRESS"),
            ssh: env_set("SSH_CONNECTION") || env_set("SSH_TTY"),
            tmux: env_set("TMUX"),
            terminal_escape,
        }
    }
}

/// The channels to try, in order; the first that works is used, except that over
/// SSH a terminal notification is sent as well, since a desktop there is not the
/// reviewer's.
pub fn plan(method: NotificationMethod, environment: &Environment) -> Vec<Channel> {
    let terminal = environment.terminal_escape.unwrap_or(Channel::Bell);
    match method {
        NotificationMethod::Off => vec![],
        NotificationMethod::Bell => vec![Channel::Bell],
        NotificationMethod::Desktop => vec![Channel::Desktop, Channel::Bell],
        NotificationMethod::Terminal => vec![environment.terminal_escape.unwrap_or(Channel::Osc9)],
        NotificationMethod::Auto => match (environment.session_bus, environment.ssh) {
            (true, false) => vec![Channel::Desktop, terminal],
            (_, true) => vec![terminal],
            (false, false) => vec![terminal],
        },
    }
}

/// Wraps an escape sequence so tmux passes it to the outer terminal.
pub fn tmux_passthrough(sequence: &str) -> String {
    format!("\x1bPtmux;{}\x1b\\", sequence.replace('\x1b', "\x1b\x1b"))
}

/// The bytes a terminal channel writes.
pub fn terminal_sequence(channel: Channel, title: &str, body: &str, tmux: bool) -> String {
    // Inside the sequence `;` separates fields and control characters would end it.
    let clean = |text: &str| sanitize_line(text).replace(';', ",");
    let sequence = match channel {
        Channel::Osc9 => format!("\x1b]9;{}: {}\x07", clean(title), clean(body)),
        Channel::Osc777 => format!("\x1b]777;notify;{};{}\x07", clean(title), clean(body)),
        Channel::Bell | Channel::Desktop => return "\x07".to_string(),
    };
    if tmux {
        tmux_passthrough(&sequence)
    } else {
        sequence
    }
}

/// OSC 52: put `text` on the terminal's clipboard.
pub fn clipboard_sequence(text: &str, tmux: bool) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let sequence = format!("\x1b]52;c;{encoded}\x07");
    if tmux {
        tmux_passthrough(&sequence)
    } else {
        sequence
    }
}

/// Writes escape sequences to the terminal, ignoring errors (a notification or a
/// copy is never worth failing the inbox).
pub fn write_to_terminal(bytes: &str) {
    let mut stdout = std::io::stdout();
    if let Err(err) = stdout
        .write_all(bytes.as_bytes())
        .and_then(|_| stdout.flush())
    {
        tracing::warn!("could not write to the terminal: {err}");
    }
}

async fn desktop(title: &str, body: &str) -> Result<(), String> {
    notify_rust::Notification::new()
        .appname("signoff")
        .summary(&sanitize_line(title))
        .body(&sanitize_line(body))
        .show_async()
        .await
        .map(|_| ())
        .map_err(|err| err.to_string())
}

#[derive(Debug, Clone)]
pub struct Notifier {
    method: NotificationMethod,
    environment: Environment,
}

impl Notifier {
    pub fn new(method: NotificationMethod, environment: Environment) -> Notifier {
        Notifier {
            method,
            environment,
        }
    }

    /// Terminal channels write at once (between frames); a desktop notification is
    /// sent in the background, falling back to the terminal if it fails.
    pub fn notify(&self, title: String, body: String) {
        let channels = plan(self.method, &self.environment);
        let tmux = self.environment.tmux;
        let also_terminal = self.environment.ssh;
        let Some(&first) = channels.first() else {
            return;
        };
        if first != Channel::Desktop {
            write_to_terminal(&terminal_sequence(first, &title, &body, tmux));
            return;
        }
        let fallback = channels.get(1).copied();
        tokio::spawn(async move {
            match desktop(&title, &body).await {
                Ok(()) if !also_terminal => {}
                Ok(()) => {
                    if let Some(channel) = fallback {
                        write_to_terminal(&terminal_sequence(channel, &title, &body, tmux));
                    }
                }
                Err(err) => {
                    tracing::info!("desktop notification failed ({err}); using the terminal");
                    if let Some(channel) = fallback {
                        write_to_terminal(&terminal_sequence(channel, &title, &body, tmux));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(session_bus: bool, ssh: bool, escape: Option<Channel>) -> Environment {
        Environment {
            session_bus,
            ssh,
            tmux: false,
            terminal_escape: escape,
        }
    }

    #[test]
    fn auto_prefers_the_desktop_locally_and_the_terminal_over_ssh() {
        use NotificationMethod::*;
        assert_eq!(
            plan(Auto, &environment(true, false, Some(Channel::Osc777))),
            [Channel::Desktop, Channel::Osc777]
        );
        assert_eq!(
            plan(Auto, &environment(false, true, Some(Channel::Osc9))),
            [Channel::Osc9]
        );
        assert_eq!(
            plan(Auto, &environment(false, false, None)),
            [Channel::Bell]
        );
        assert_eq!(plan(Off, &environment(true, false, None)), []);
        assert_eq!(
            plan(Terminal, &environment(true, false, None)),
            [Channel::Osc9]
        );
        assert_eq!(
            plan(Desktop, &environment(false, false, None)),
            [Channel::Desktop, Channel::Bell]
        );
    }

    #[test]
    fn sequences_are_well_formed_and_cannot_be_broken_out_of() {
        assert_eq!(
            terminal_sequence(Channel::Osc777, "Reminder: deploy; now", "x\x07y", false),
            "\x1b]777;notify;Reminder: deploy, now;xy\x07"
        );
        assert_eq!(
            terminal_sequence(Channel::Osc9, "T", "b", false),
            "\x1b]9;T: b\x07"
        );
        assert_eq!(
            terminal_sequence(Channel::Osc9, "T", "b", true),
            "\x1bPtmux;\x1b\x1b]9;T: b\x07\x1b\\"
        );
        assert_eq!(terminal_sequence(Channel::Bell, "T", "b", true), "\x07");
        assert_eq!(clipboard_sequence("abc", false), "\x1b]52;c;YWJj\x07");
    }
}
