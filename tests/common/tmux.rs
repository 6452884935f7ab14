//! The real `signoff` inbox in a tmux pane: start it, type into it, read the screen.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Keys sent one by one get a pause between them, so that `Esc` followed by a
/// letter is not read as Alt+letter.
const KEY_PAUSE: Duration = Duration::from_millis(150);

pub struct Tmux {
    socket: PathBuf,
    session: String,
}

fn tmux_available() {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "these tests drive the inbox under tmux; install it (apt-get install tmux)"
    );
}

impl Tmux {
    /// Runs `signoff ARGS` in a new detached tmux session of the given size, with
    /// `env` set and its XDG directories inside `home`.
    pub fn start(
        home: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        width: u16,
        height: u16,
    ) -> Tmux {
        tmux_available();
        let socket = home.join("tmux.sock");
        let session = "inbox".to_string();
        let mut command = format!(
            "env HOME={home} XDG_CONFIG_HOME={home}/config XDG_DATA_HOME={home}/data XDG_STATE_HOME={home}/state TERM=xterm-256color",
            home = home.display()
        );
        for (name, value) in env {
            command.push_str(&format!(" {name}='{value}'"));
        }
        command.push_str(&format!(" {}", super::binary()));
        for arg in args {
            command.push_str(&format!(" '{arg}'"));
        }
        // Keep the pane after the program exits so a crash can still be read.
        command.push_str("; echo EXITED $?; sleep 600");
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                &command,
            ])
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket, session }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(
            &self
                .tmux(&["capture-pane", "-p", "-t", &self.session])
                .stdout,
        )
        .into_owned()
    }

    /// Sends tmux key names (`Enter`, `Escape`, `j`, `C-u`), one at a time.
    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.tmux(&["send-keys", "-t", &self.session, key]);
            std::thread::sleep(KEY_PAUSE);
        }
    }

    /// Types text literally.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", &self.session, "-l", text]);
        std::thread::sleep(KEY_PAUSE);
    }

    /// Waits until the screen satisfies `ready`, returning it; fails with the last
    /// screen after `timeout`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if started.elapsed() > timeout {
                panic!("timed out waiting for {what}; the screen was:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_for_text(&self, text: &str) -> String {
        self.wait_until(&format!("`{text}`"), Duration::from_secs(20), |screen| {
            screen.contains(text)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}
