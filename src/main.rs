//! The `signoff` binary: parsing and dispatch only; everything else is in the library.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    signoff::cli::main().await
}
