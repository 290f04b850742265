//! The `upi-switch` binary: parse the command line, then run one mode.
//! Every failure ends as one line on stderr and a non-zero exit code.

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;
use upi_switch::cli::{Cli, Command, RigCommand};
use upi_switch::rig::{self, RigError};
use upi_switch::{
    adapters::pg, banksim, bench, demo, loadgen, processor_sim, serve, telemetry, verify,
};

/// mimalloc instead of the system allocator: the switch allocates small,
/// short-lived buffers on many threads, where glibc's malloc spent 14% of
/// the switch's CPU at 1,000 tx/s (consolidating and unlinking chunks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The demo and the bench write their logs to files of their own: their
    // terminal is for progress and the summary.
    if !matches!(cli.command, Command::Demo(_) | Command::Bench(_)) {
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
        Command::Demo(args) => {
            // The switch flags given to the demo go on to the switch it starts.
            let demo_matches = matches.subcommand_matches("demo");
            let serve_args = demo_matches
                .map(|m| upi_switch::cli::given_switch_args(m, demo::RIG_SETS))
                .unwrap_or_default();
            // Databases named on the command line or in the environment are
            // used (and kept); else the demo makes fresh ones and drops them.
            let named = |id: &str| {
                demo_matches
                    .and_then(|m| m.value_source(id))
                    .is_some_and(|s| {
                        matches!(
                            s,
                            clap::parser::ValueSource::CommandLine
                                | clap::parser::ValueSource::EnvVariable
                        )
                    })
            };
            let databases = if named("database_url") || named("bank_database_url") {
                demo::DemoDatabases::Named
            } else {
                demo::DemoDatabases::Fresh
            };
            demo::run(args, serve_args, databases, cli.log_format).await
        }
        Command::Rig(args) => {
            let result = match args.command {
                RigCommand::Up(up) => rig::cmd::up(up).await,
                RigCommand::Down(down) => rig::cmd::down(down),
            };
            return rig_exit(result);
        }
        Command::Bench(args) => bench::run(args).await.map_err(|e| e.to_string()),
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
        Command::Settlement(args) => upi_switch::settlement::cli::run(args)
            .await
            .map_err(|e| e.to_string()),
        Command::Analytics(args) => upi_switch::analytics::run(args)
            .await
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upi-switch: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// 0 done; 2 a wrong command line; 1 anything else (one line on stderr).
fn rig_exit(result: Result<(), RigError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upi-switch: error: {e}");
            match e {
                RigError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
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
