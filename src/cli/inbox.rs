//! `signoff` (no subcommand) or `signoff inbox`: the terminal reviewer inbox.
//!
//! It connects to the configured server. With no server configured, or when the
//! configured one is this machine's and nothing listens there, it starts the
//! server in-process on the local SQLite file, so the inbox works on a fresh
//! machine with no set-up.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use super::Cli;
use super::serve::{init_file_logging, start_server};
use crate::client::Client;
use crate::config::{
    ClientConfig, FileConfig, ServerOverrides, ServerSettings, client_config_path,
};
use crate::domain::{Principal, PrincipalKind};
use crate::server::RunningServer;
use crate::tui::settings::TuiSettings;

/// How long to wait for a configured server before treating it as down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

pub async fn run(cli: &Cli) -> Result<ExitCode> {
    let log = init_file_logging()?;
    let file = cli.file_config()?;
    let settings = TuiSettings::resolve(&file.tui, no_color())?;
    let (client, embedded) = connect(cli, &file).await?;
    tracing::info!(
        "inbox connected to {} (log: {})",
        client.base_url(),
        log.display()
    );
    let result = crate::tui::app::run(client, settings, None).await;
    if let Some(server) = embedded {
        server
            .stop()
            .await
            .context("stopping the embedded server")?;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn reachable(client: &Client) -> bool {
    matches!(
        tokio::time::timeout(HEALTH_TIMEOUT, client.health()).await,
        Ok(Ok(_))
    )
}

/// The socket address of a URL that points at this machine, if it does.
fn local_address(url: &str) -> Option<SocketAddr> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.trim_matches(['[', ']']);
    let ip: std::net::IpAddr = if host == "localhost" {
        "127.0.0.1".parse().ok()?
    } else {
        host.parse().ok()?
    };
    ip.is_loopback()
        .then(|| SocketAddr::new(ip, parsed.port_or_known_default().unwrap_or(80)))
}

/// Starts a server in this process on the local database and returns a client
/// for it, with a key that works on that database.
async fn embed(
    file: &FileConfig,
    listener: TcpListener,
    key: Option<String>,
) -> Result<(Client, Option<RunningServer>)> {
    let settings = ServerSettings::resolve(file, &ServerOverrides::default())?;
    let (server, url) = start_server(&settings, listener).await?;
    let saved = ClientConfig::load(&client_config_path()?)?;
    let candidates = key.into_iter().chain(saved.map(|config| config.key));
    let mut working = None;
    for candidate in candidates {
        if server.engine.authenticate(&candidate).await.is_ok() {
            working = Some(candidate);
            break;
        }
    }
    let key = match working {
        Some(key) => key,
        None => {
            // The saved key belongs to another database: mint one for this one.
            let admin = Principal::new(PrincipalKind::Admin, "local-inbox", vec![])?;
            let (_, key) = server
                .engine
                .create_key(&admin, admin.clone(), Some("created by the inbox".into()))
                .await?;
            ClientConfig {
                server: url.clone(),
                key: key.clone(),
            }
            .save(&client_config_path()?)?;
            key
        }
    };
    tracing::info!("started an embedded server on {url}");
    Ok((Client::new(&url, &key)?.with_via("tui"), Some(server)))
}

async fn connect(cli: &Cli, file: &FileConfig) -> Result<(Client, Option<RunningServer>)> {
    let (url, key) = cli.server_and_key()?;
    if let (Some(url), Some(key)) = (&url, &key) {
        let client = Client::new(url, key)?.with_via("tui");
        if reachable(&client).await {
            return Ok((client, None));
        }
        if let Some(address) = local_address(url)
            && let Ok(listener) = TcpListener::bind(address).await
        {
            return embed(file, listener, Some(key.clone())).await;
        }
        // A remote server that is down: the inbox shows it offline and keeps retrying.
        return Ok((client, None));
    }
    if let Some(url) = &url {
        anyhow::bail!("no API key for {url}: pass --key or set SIGNOFF_KEY");
    }
    let settings = ServerSettings::resolve(file, &ServerOverrides::default())?;
    let listener = match TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        // The default port is taken by something else: any free port will do.
        Err(_) => TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot open a local port")?,
    };
    embed(file, listener, key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_local() {
        assert_eq!(
            local_address("http://127.0.0.1:7700"),
            Some("127.0.0.1:7700".parse().unwrap())
        );
        assert_eq!(
            local_address("http://localhost:9000/"),
            Some("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(
            local_address("http://[::1]:7700"),
            Some("[::1]:7700".parse().unwrap())
        );
        assert_eq!(local_address("https://signoff.example.com"), None);
        assert_eq!(local_address("http://10.0.0.5:7700"), None);
        assert_eq!(local_address("not a url"), None);
    }
}
