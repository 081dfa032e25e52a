//! Logs: text by default, JSON with `LOG_FORMAT=json` (for sidecars whose logs are shipped).
//! Under systemd (`JOURNAL_STREAM` set) text drops colours and timestamps: journald adds its own;
//! elsewhere colours are used only when stderr is a terminal.
//! `RUST_LOG` selects levels (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    if json {
        builder.json().flatten_event(true).init();
    } else if journald {
        builder.with_ansi(false).without_time().init();
    } else {
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
