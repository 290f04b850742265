//! The `upi-switch` binary: parse the command line, then run one mode.
//! Every failure ends as one line on stderr and a non-zero exit code.

use clap::Parser;

/// mimalloc instead of the system allocator: the switch allocates small,
/// short-lived buffers on many threads, where glibc's malloc spent 14% of
/// the switch's CPU at 1,000 tx/s (consolidating and unlinking chunks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use upi_switch::cli::{Cli, Command};
use upi_switch::{adapters::pg, banksim, demo, loadgen, processor_sim, serve, telemetry, verify};

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo writes its logs to a file of its own: its terminal is for progress and the summary.
    if !matches!(cli.command, Command::Demo(_)) {
        telemetry::init(cli.log_format);
    }
    let result: Result<(), String> = match cli.command {
        Command::BankSim(args) => banksim::run(args).await.map_err(|e| e.to_string()),
        Command::ProcessorSim(args) => processor_sim::run(args).await.map_err(|e| e.to_string()),
        Command::Migrate(args) => {
            let schema = if args.bank {
                pg::Schema::Bank
            } else {
                pg::Schema::Switch
            };
            migrate(&args.database_url, schema).await
        }
        Command::Serve(args) => serve::run(args.switch).await.map_err(|e| e.to_string()),
        Command::Demo(args) => demo::run(args, cli.log_format).await,
        Command::Verify(args) => {
            return match verify::run(args).await {
                Ok(verify::Verdict::Clean) => ExitCode::SUCCESS,
                Ok(verify::Verdict::Violations) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("upi-switch: verify could not check: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Loadgen(args) => loadgen::run(args).await.map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upi-switch: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(url: &str, schema: pg::Schema) -> Result<(), String> {
    let db = pg::DbUrl::parse(url).map_err(|e| e.to_string())?;
    pg::ensure_database(&db).await.map_err(|e| e.to_string())?;
    let applied = pg::migrate(&db, schema).await.map_err(|e| e.to_string())?;
    println!("{}: {} migration(s) applied", db.dbname, applied.len());
    Ok(())
}
