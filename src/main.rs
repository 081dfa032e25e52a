//! The `flux-inputs` command: parse arguments, load configuration, run.
//! Errors end the process with a message and a non-zero exit code, never a panic.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use flux_inputs::config::{ApiMode, Config};
use flux_inputs::{api, cli, server};

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
    /// Create or replace every record of a seed file, all or nothing, with the API's checks.
    Import {
        /// A seed file (flux-resourceset's format is accepted), or `-` for standard input.
        file: PathBuf,
        /// Print what would change and store nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: list changed clusters from this offset on (100 per run).
        #[arg(long, default_value_t = 0)]
        changes_offset: usize,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Print the inventory in seed format.
    Export,
    /// Ask the running server on `listen_addr` whether it is alive (`/health`) or ready
    /// (`/ready`): exit 0 when it answers 200. For exec probes where the kubelet cannot reach
    /// the port (a sidecar listening on 127.0.0.1) and the image has no shell or curl.
    Probe {
        /// What to ask.
        #[arg(value_enum, default_value_t = Probe::Health)]
        what: Probe,
    },
    /// Write a consistent copy of the database (safe while the server runs).
    Backup {
        /// The new file; must not exist.
        path: PathBuf,
    },
    /// Check configuration, file integrity, schema version and every cluster's feeds.
    Check,
    /// Print the audit trail as JSON lines.
    Audit {
        /// Only this kind: clusters, platform_components, namespaces, rolebindings, overlays.
        #[arg(long)]
        kind: Option<String>,
        /// Only this resource id.
        #[arg(long)]
        id: Option<String>,
        /// Only entries after this revision.
        #[arg(long)]
        since: Option<i64>,
        /// At most this many entries.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Convergence: per component and environment, clusters per state (from the file).
    Status {
        /// One component's clusters: desired and reported version, state, reason.
        #[arg(long)]
        component: Option<String>,
        /// Only clusters in this state: converged, progressing, failed, unknown, disabled, stale.
        #[arg(long, value_parser = parse_state)]
        state: Option<flux_inputs::domain::report::State>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put a resource back to its state before an audit revision (itself audited).
    Revert {
        revision: i64,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Named read tokens.
    #[command(subcommand)]
    Token(TokenArgs),
    /// Progressive rollouts of a component over the fleet (a running server moves them).
    #[command(subcommand)]
    Rollout(RolloutArgs),
    /// Overlays: values and assignments for every cluster a selector matches.
    #[command(subcommand)]
    Overlay(ResourceArgs),
    /// Maintenance windows and freezes: when the clusters a selector matches may change.
    #[command(subcommand)]
    Window(ResourceArgs),
    /// Print the OpenAPI document.
    Openapi {
        /// The routes to describe.
        #[arg(long, value_enum, default_value_t = Mode::Crud)]
        mode: Mode,
    },
}

fn parse_state(text: &str) -> Result<flux_inputs::domain::report::State, String> {
    flux_inputs::domain::report::State::parse(text).ok_or_else(|| {
        "expected converged, progressing, failed, unknown, disabled or stale".to_owned()
    })
}

#[derive(Subcommand)]
enum TokenArgs {
    /// Create a token and print it (once; only its SHA-256 is stored).
    Create {
        /// The cluster id whose Flux feeds it may read (the default name).
        #[arg(long, required_unless_present = "all")]
        cluster: Option<String>,
        /// Let it read every read route instead (needs --name).
        #[arg(long, conflicts_with = "cluster", requires = "name")]
        all: bool,
        /// The token's name (default: the cluster id).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token: it stops working at once (within a second for a running server).
    Revoke { name: String },
}

#[derive(Subcommand)]
enum RolloutArgs {
    /// Check a rollout file (JSON, as POST /rollouts takes; `-` for stdin) and print its plan.
    Plan { file: PathBuf },
    /// Store a rollout file as a planned rollout.
    Create { file: PathBuf },
    /// Start a planned rollout.
    Start { id: String },
    /// Pause a running rollout.
    Pause { id: String },
    /// Resume a paused rollout (failed clusters are judged again).
    Resume { id: String },
    /// Stop a rollout for good where it stands.
    Abort { id: String },
    /// Give every cluster the rollout changed its previous values back.
    Rollback { id: String },
    /// One rollout in detail, or a line per rollout.
    Status {
        id: Option<String>,
        /// JSON, as GET /rollouts/{id} answers.
        #[arg(long)]
        json: bool,
    },
}

/// The confirmations a write may need.
#[derive(clap::Args)]
struct Confirm {
    /// The number of clusters the write takes inputs from (removed or disabled), when that
    /// needs confirming: an emptied feed, or more than max_clusters_shrunk clusters.
    #[arg(long)]
    confirm: Option<u64>,
    /// The number of clusters closed by a maintenance window whose feeds the write changes,
    /// when there are any: overrides the windows (the audit trail says so).
    #[arg(long)]
    confirm_closed: Option<u64>,
}

impl From<Confirm> for cli::Confirm {
    fn from(c: Confirm) -> Self {
        cli::Confirm {
            confirm: c.confirm,
            confirm_closed: c.confirm_closed,
        }
    }
}

/// `overlay` and `window`: the same four operations on their collection.
#[derive(Subcommand)]
enum ResourceArgs {
    /// A line per record: id, selector, clusters matched, and what it is.
    List,
    /// One record as JSON, as GET /overlays/{id} or /windows/{id} answers.
    Get { id: String },
    /// Create the record in a JSON file (`-` for stdin), or replace it whole.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Check and print how the feeds would change; store nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Delete a record.
    Delete {
        id: String,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        confirm: Confirm,
    },
}

impl From<ResourceArgs> for cli::ResourceCommand {
    fn from(args: ResourceArgs) -> Self {
        match args {
            ResourceArgs::List => cli::ResourceCommand::List,
            ResourceArgs::Get { id } => cli::ResourceCommand::Get { id },
            ResourceArgs::Apply {
                file,
                dry_run,
                confirm,
            } => cli::ResourceCommand::Apply {
                file,
                dry_run,
                confirm: confirm.into(),
            },
            ResourceArgs::Delete {
                id,
                dry_run,
                confirm,
            } => cli::ResourceCommand::Delete {
                id,
                dry_run,
                confirm: confirm.into(),
            },
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Probe {
    Health,
    Ready,
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
        Command::Import {
            file,
            dry_run,
            changes_offset,
            confirm,
        } => offline(cli.config, |c| {
            cli::import(c, &file, dry_run, changes_offset, confirm.into())
        }),
        Command::Export => offline(cli.config, cli::export),
        Command::Probe { what } => offline(cli.config, |c| {
            cli::probe(
                c,
                match what {
                    Probe::Health => "/health",
                    Probe::Ready => "/ready",
                },
            )
        }),
        Command::Backup { path } => offline(cli.config, |c| cli::backup(c, &path)),
        Command::Check => offline(cli.config, cli::check),
        Command::Audit {
            kind,
            id,
            since,
            limit,
        } => offline(cli.config, |c| {
            let filter = flux_inputs::store::audit::Filter {
                kind,
                resource_id: id,
                since_revision: since,
                limit,
            };
            cli::audit(c, filter)
        }),
        Command::Status {
            component,
            state,
            json,
        } => offline(cli.config, |c| {
            cli::status(
                c,
                cli::StatusQuery {
                    component: component.clone(),
                    state,
                    json,
                },
            )
        }),
        Command::Revert { revision, confirm } => {
            offline(cli.config, |c| cli::revert(c, revision, confirm.into()))
        }
        Command::Token(args) => {
            let command = match args {
                TokenArgs::Create { cluster, name, .. } => {
                    let name = name.or_else(|| cluster.clone()).unwrap_or_default();
                    cli::TokenCommand::Create { name, cluster }
                }
                TokenArgs::List => cli::TokenCommand::List,
                TokenArgs::Revoke { name } => cli::TokenCommand::Revoke { name },
            };
            offline(cli.config, |c| cli::token(c, command))
        }
        Command::Rollout(args) => {
            use flux_inputs::domain::rollout::Verb;
            let command = match args {
                RolloutArgs::Plan { file } => cli::RolloutCommand::Plan { file },
                RolloutArgs::Create { file } => cli::RolloutCommand::Create { file },
                RolloutArgs::Start { id } => cli::RolloutCommand::Verb {
                    id,
                    verb: Verb::Start,
                },
                RolloutArgs::Pause { id } => cli::RolloutCommand::Verb {
                    id,
                    verb: Verb::Pause,
                },
                RolloutArgs::Resume { id } => cli::RolloutCommand::Verb {
                    id,
                    verb: Verb::Resume,
                },
                RolloutArgs::Abort { id } => cli::RolloutCommand::Verb {
                    id,
                    verb: Verb::Abort,
                },
                RolloutArgs::Rollback { id } => cli::RolloutCommand::Verb {
                    id,
                    verb: Verb::Rollback,
                },
                RolloutArgs::Status { id, json } => cli::RolloutCommand::Status { id, json },
            };
            offline(cli.config, |c| cli::rollout(c, command))
        }
        Command::Overlay(args) => offline(cli.config, |c| {
            cli::resource::<flux_inputs::domain::overlay::Overlay>(c, args.into())
        }),
        Command::Window(args) => offline(cli.config, |c| {
            cli::resource::<flux_inputs::domain::window::Window>(c, args.into())
        }),
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

/// Runs an offline command with the configuration it needs (no tokens).
fn offline(
    config_file: Option<PathBuf>,
    command: impl FnOnce(&Config) -> Result<(), cli::Failure>,
) -> ExitCode {
    let config_file = config_file.or_else(Config::default_file);
    let result = Config::load_offline(config_file.as_deref())
        .map_err(|err| cli::Failure {
            code: 3,
            message: err.to_string(),
        })
        .and_then(|config| command(&config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("flux-inputs: {}", failure.message);
            failure.exit_code()
        }
    }
}

/// glibc gives every thread that allocates an arena of its own, up to eight per core, and
/// an arena keeps what was freed in it: at 10,000 clusters that was 4–9 MiB of the serving
/// process's peak RSS, for about 5 % of feed requests per second (BENCHMARKS.md). Two
/// arenas; `MALLOC_ARENA_MAX` in the environment still decides when it is set.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` sets an allocator parameter and touches no Rust memory; it is
        // called before the runtime starts any thread.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn serve(config_file: Option<PathBuf>) -> Result<(), String> {
    let config_file = config_file.or_else(Config::default_file);
    let config = Config::load(config_file.as_deref()).map_err(|err| err.to_string())?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    cap_malloc_arenas();
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
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(
            listen_addr = %config.listen_addr,
            mode = ?config.api_mode,
            database = %config.database_path.display(),
            console = %format!("{scheme}://{}/ui/", config.listen_addr),
            "flux-inputs serving (web console at /ui/, sign in with a token)"
        );
        server::serve(&config, store, acceptor, server::shutdown_signal())
            .await
            .map_err(|err| format!("server error: {err}"))
    })
}

fn init_logging() {
    flux_inputs::telemetry::init();
}
