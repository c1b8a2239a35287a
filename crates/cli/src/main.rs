//! The `twinledger` binary: parses arguments, loads settings and runs one subcommand.
//!
//! Exit codes: 0 success (or Valid), 1 Tampered, 2 error, 3 Pending.

mod chain;
mod cli;
mod cmd;
mod settings;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

/// Every request, record and scanned row allocates and frees short-lived buffers on several
/// threads; glibc's allocator spent a third of an audit in `malloc`/`free` and their locks
/// (docs/performance.md), mimalloc's thread-local heaps a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init(settings::Settings::log_format(cli.config.as_deref()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    };
    // A blocking task that never returns (a store call stuck behind a lock) must not keep a
    // stopped service alive: everything durable is done by now.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    code
}
