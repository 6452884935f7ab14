//! The event loop: the only place with I/O. It draws the state, waits for the next
//! thing to happen (a key, a stream message, the clock, a finished effect), passes
//! it to `update`, and performs the effects `update` asks for.

use std::collections::VecDeque;
use std::io::stdout;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TerminalEvent, EventStream,
};
use crossterm::execute;
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::action::{Action, Effect};
use super::notify::{Environment, Notifier, clipboard_sequence, write_to_terminal};
use super::settings::TuiSettings;
use super::state::State;
use super::update::update;
use super::view;
use crate::client::{Client, TaskStreamMessage};
use crate::clock::{Clock, SystemClock};

/// How long quitting waits for decisions still being sent.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// Runs the inbox until the reviewer quits. `notices` feeds the activity line
/// (the demo's simulated agents use it to say when they resume).
pub async fn run(
    client: Client,
    settings: TuiSettings,
    notices: Option<mpsc::UnboundedReceiver<String>>,
) -> Result<()> {
    let mouse = settings.mouse;
    let mut terminal = ratatui::try_init().context("cannot take over the terminal")?;
    // Best effort: a terminal without these features still works.
    let _ = execute!(stdout(), EnableBracketedPaste);
    if mouse {
        let _ = execute!(stdout(), EnableMouseCapture);
    }
    let result = event_loop(&mut terminal, client, settings, notices).await;
    let _ = execute!(stdout(), DisableBracketedPaste, DisableMouseCapture);
    ratatui::restore();
    result
}

fn translate(event: TerminalEvent) -> Option<Action> {
    match event {
        TerminalEvent::Key(key) => Some(Action::Key(key)),
        TerminalEvent::Paste(text) => Some(Action::Paste(text)),
        TerminalEvent::Mouse(mouse) => Some(Action::Mouse(mouse)),
        TerminalEvent::Resize(width, height) => Some(Action::Resize { width, height }),
        TerminalEvent::FocusGained | TerminalEvent::FocusLost => None,
    }
}

fn stream_action(message: TaskStreamMessage, clock: &SystemClock) -> Action {
    match message {
        TaskStreamMessage::Connected => Action::Connected,
        TaskStreamMessage::Item(item) => Action::Stream(item),
        TaskStreamMessage::Disconnected { error, retry_in } => Action::Disconnected {
            error,
            retry_at: clock.now().plus_seconds(retry_in.as_secs().max(1) as i64),
        },
    }
}

async fn next_notice(notices: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match notices {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    client: Client,
    settings: TuiSettings,
    mut notices: Option<mpsc::UnboundedReceiver<String>>,
) -> Result<()> {
    let clock = SystemClock;
    let notifier = Notifier::new(settings.notifications, Environment::detect());
    let tmux = Environment::detect().tmux;
    let mut state = State::new(settings, client.base_url(), clock.now());
    let size = terminal.size()?;
    update(
        &mut state,
        Action::Resize {
            width: size.width,
            height: size.height,
        },
    );

    let (results, mut finished) = mpsc::unbounded_channel::<Action>();
    let mut in_flight = JoinSet::new();
    {
        let (client, results) = (client.clone(), results.clone());
        in_flight.spawn(async move {
            match client.me().await {
                Ok(principal) => {
                    let _ = results.send(Action::Identity(principal));
                }
                Err(err) => tracing::warn!("could not ask who this key belongs to: {err}"),
            }
        });
    }
    let mut stream = Box::pin(client.task_stream(None)?);
    let mut input = Some(EventStream::new());
    let mut tick = tokio::time::interval(Duration::from_secs(1));

    loop {
        terminal.draw(|frame| view::render(&state, frame))?;
        let action = tokio::select! {
            event = async { input.as_mut()?.next().await } => match event {
                Some(Ok(event)) => translate(event),
                Some(Err(err)) => return Err(err).context("reading the terminal failed"),
                None => return Ok(()),
            },
            Some(message) = stream.next() => Some(stream_action(message, &clock)),
            _ = tick.tick() => Some(Action::Tick(clock.now())),
            Some(action) = finished.recv() => Some(action),
            Some(text) = next_notice(&mut notices) => Some(Action::Notice(text)),
        };
        let Some(action) = action else { continue };
        let mut effects: VecDeque<Effect> = update(&mut state, action).into();
        while let Some(effect) = effects.pop_front() {
            match effect {
                Effect::Quit => {
                    let _ = tokio::time::timeout(QUIT_GRACE, async {
                        while in_flight.join_next().await.is_some() {}
                    })
                    .await;
                    return Ok(());
                }
                Effect::Submit { intent_id, body } => {
                    let (client, results) = (client.clone(), results.clone());
                    in_flight.spawn(async move {
                        let result = client
                            .resume(&intent_id, &body, None, None)
                            .await
                            .map(|_| ());
                        let _ = results.send(Action::DecisionSent { intent_id, result });
                    });
                }
                Effect::LoadDetail { intent_id } => {
                    let (client, results) = (client.clone(), results.clone());
                    tokio::spawn(async move {
                        let (intent, events) =
                            tokio::join!(client.intent(&intent_id), client.events(&intent_id, 0));
                        let result = intent
                            .and_then(|intent| Ok((intent.payload, events?)))
                            .map_err(|err| err.to_string());
                        let _ = results.send(Action::DetailLoaded { intent_id, result });
                    });
                }
                Effect::MarkViewed { intent_id } => {
                    let client = client.clone();
                    tokio::spawn(async move {
                        // Best effort: the task may have been decided meanwhile.
                        if let Err(err) = client.mark_viewed(&intent_id).await {
                            tracing::debug!(%intent_id, "not recorded as viewed: {err}");
                        }
                    });
                }
                Effect::Notify { title, body } => notifier.notify(title, body),
                Effect::Copy { text } => write_to_terminal(&clipboard_sequence(&text, tmux)),
                Effect::OpenEditor { text } => {
                    // The editor needs the keyboard: stop reading it until it exits.
                    drop(input.take());
                    let edited = edit_in_editor(terminal, &text);
                    input = Some(EventStream::new());
                    effects.extend(update(&mut state, Action::EditorClosed { text: edited }));
                }
            }
        }
        while let Some(done) = in_flight.try_join_next() {
            if let Err(err) = done {
                tracing::warn!("a background task failed: {err}");
            }
        }
    }
}

/// Suspends the inbox, edits `text` in `$VISUAL`/`$EDITOR` (default `vi`), and
/// returns the result; `None` if the editor could not run or failed.
fn edit_in_editor(terminal: &mut DefaultTerminal, text: &str) -> Option<String> {
    let set = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    };
    let editor = set("VISUAL")
        .or_else(|| set("EDITOR"))
        .unwrap_or_else(|| "vi".to_string());
    let file = tempfile::Builder::new()
        .prefix("signoff-comment-")
        .suffix(".md")
        .tempfile()
        .ok()?;
    std::fs::write(file.path(), text).ok()?;
    ratatui::restore();
    // Through the shell, so an EDITOR with arguments ("code --wait") works.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(file.path())
        .status();
    *terminal = ratatui::init();
    let _ = terminal.clear();
    match status {
        Ok(status) if status.success() => std::fs::read_to_string(file.path())
            .ok()
            .map(|text| text.trim_end().to_string()),
        Ok(status) => {
            tracing::warn!("{editor} exited with {status}");
            None
        }
        Err(err) => {
            tracing::warn!("could not run {editor}: {err}");
            None
        }
    }
}
