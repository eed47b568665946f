//! The command line. Each command calls `service` (never HTTP) on the same
//! store and with the same `KEYWARD_*` settings as the server. Changes are
//! audited with actor `cli`. Errors go to stderr with a non-zero status.

mod commands;

use std::process::ExitCode;

use clap::Parser;

pub use commands::{Cli, Command};

use crate::startup::Application;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
}

impl From<crate::startup::StartupError> for CliError {
    fn from(e: crate::startup::StartupError) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<diesel::result::Error> for CliError {
    fn from(e: diesel::result::Error) -> Self {
        CliError::Service(e.into())
    }
}

impl From<crate::tokens::keys::KeyError> for CliError {
    fn from(e: crate::tokens::keys::KeyError) -> Self {
        CliError::Failed(e.to_string())
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve(cli.settings),
        other => commands::run(&cli.settings, other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: crate::Settings) -> Result<(), CliError> {
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let app = Application::build(settings)?;
        log::info!("keyward listening; issuer {}", app.issuer());
        app.run_until_stopped()
            .await
            .map_err(|e| CliError::Failed(format!("server stopped: {e}")))
    });
    // Dropping the runtime waits for every blocking task, and a database
    // call stuck on a hung connection never ends: the process is exiting,
    // so its threads are left to the OS (bounded shutdown, see startup.rs).
    std::mem::forget(system);
    log::info!("keyward stopped");
    result
}
