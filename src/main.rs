//! The `flux-inputs` command: parse arguments, load configuration, run.
//! Errors end the process with a message and a non-zero exit code, never a panic.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use flux_inputs::config::{ApiMode, Config};
use flux_inputs::{api, server};

#[derive(Parser)]
#[command(
    name = "flux-inputs",
    version,
    about = "Fleet inventory served to Flux Operator's ResourceSetInputProvider"
)]
struct Cli {
    /// TOML configuration file (environment variables override it).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Print the OpenAPI document.
    Openapi {
        /// The routes to describe.
        #[arg(long, value_enum, default_value_t = Mode::Crud)]
        mode: Mode,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    ReadOnly,
    Crud,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi { mode } => {
            let mode = match mode {
                Mode::ReadOnly => ApiMode::ReadOnly,
                Mode::Crud => ApiMode::Crud,
            };
            print!("{}", api::spec_yaml(mode));
            ExitCode::SUCCESS
        }
        Command::Serve => match serve(cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                tracing::error!("{message}");
                eprintln!("flux-inputs: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config_file: Option<PathBuf>) -> Result<(), String> {
    let config_file = config_file.or_else(Config::default_file);
    let config = Config::load(config_file.as_deref()).map_err(|err| err.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // SQLite work is already capped by the connection pool; more blocking threads would
        // only add stacks and malloc arenas.
        .max_blocking_threads(flux_inputs::store::BLOCKING_THREADS)
        .build()
        .map_err(|err| format!("cannot start the async runtime: {err}"))?;
    runtime.block_on(async {
        let store = tokio::task::block_in_place(|| server::open_store(&config)).map_err(|err| {
            format!(
                "cannot open the database {}: {err}",
                config.database_path.display()
            )
        })?;
        let acceptor = server::bind(&config)
            .await
            .map_err(|err| format!("cannot listen on {}: {err}", config.listen_addr))?;
        tracing::info!(
            listen_addr = %config.listen_addr,
            mode = ?config.api_mode,
            database = %config.database_path.display(),
            "flux-inputs serving"
        );
        server::serve(&config, store, acceptor, server::shutdown_signal())
            .await
            .map_err(|err| format!("server error: {err}"))
    })
}

/// Text logs to stderr; `RUST_LOG` selects levels (default `info`).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
