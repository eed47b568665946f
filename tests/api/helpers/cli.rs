//! The `keyward` binary, run the way an operator runs it: against a store,
//! a data directory and a keys directory given by environment variables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{new_store, PgSchema, TestApp};

/// The binary under test, with none of the test process's own KEYWARD_*
/// variables or RUST_LOG: what it sees is what the caller sets.
pub fn keyward_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("KEYWARD_") || name == "RUST_LOG" {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// Runs CLI commands against one store.
pub struct CliRunner {
    database_url: Option<String>,
    data_dir: PathBuf,
    keys_dir: PathBuf,
    _home: Option<tempfile::TempDir>,
    _schema: Option<PgSchema>,
}

impl CliRunner {
    /// A runner for `database_url` (none: the default in `data_dir`).
    pub fn new(database_url: Option<String>, data_dir: &Path, keys_dir: &Path) -> CliRunner {
        CliRunner {
            database_url,
            data_dir: data_dir.to_path_buf(),
            keys_dir: keys_dir.to_path_buf(),
            _home: None,
            _schema: None,
        }
    }

    /// A runner for a running app's store, data and keys.
    pub fn for_app(app: &TestApp) -> CliRunner {
        CliRunner::new(
            Some(app.settings.database_url()),
            &app.settings.data_dir,
            &app.settings.keys_dir,
        )
    }

    /// A new store of its own (SQLite, or a schema in the PostgreSQL pass),
    /// migrated with `keyward migrate`: only `serve` and `migrate` create one.
    pub fn with_new_store() -> CliRunner {
        let home = tempfile::tempdir().unwrap();
        let (url, schema) = new_store(home.path());
        let cli = CliRunner {
            database_url: Some(url),
            data_dir: home.path().join("data"),
            keys_dir: home.path().join("keys"),
            _home: Some(home),
            _schema: schema,
        };
        let migrated = cli.run(&["migrate"]);
        assert!(
            migrated.status.success(),
            "{}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        cli
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.keys_dir.clone()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = keyward_command();
        command
            .args(args)
            .env("KEYWARD_DATA_DIR", &self.data_dir)
            .env("KEYWARD_KEYS_DIR", &self.keys_dir)
            .env("RUST_LOG", "warn");
        if let Some(url) = &self.database_url {
            command.env("KEYWARD_DATABASE_URL", url);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run keyward")
    }

    /// Runs a command that must succeed; fails the test with its stderr.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs a command with `input` on its standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        use std::process::Stdio;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run keyward");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("keyward output")
    }

    /// Runs a command that must succeed and print JSON, and returns that.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
    }
}
