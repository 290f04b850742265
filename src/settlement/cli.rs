//! `upi-switch settlement close|show|report|recon`: an operator's tool that
//! talks to a running switch over HTTP with the operator token (like every
//! other tool: `traffic::operator_client`). It prints tables for people,
//! or the switch's JSON with `--json`; `report` prints the CSV as served.

use crate::traffic::{operator_client, transport_text};
use clap::{Args, Subcommand};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct SettlementArgs {
    /// Base URL of the switch.
    #[arg(long, env = "SWITCH_URL", default_value = "http://127.0.0.1:8080")]
    pub switch: String,
    /// The operator's bearer token.
    #[arg(long, env = "ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Print the switch's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: SettlementCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum SettlementCommand {
    /// Close the open window now (an empty one too) and show its positions.
    Close,
    /// List the windows (newest first), or show one window's positions.
    Show {
        /// A window id; without it, the list.
        window: Option<String>,
    },
    /// Print one bank's side of every payment of a window, as CSV.
    Report {
        window: String,
        /// The bank's code.
        #[arg(long)]
        bank: String,
    },
    /// Show a window's reconciliation; with --run, run it again and wait.
    Recon {
        window: String,
        #[arg(long)]
        run: bool,
        /// Longest wait for a run, in seconds.
        #[arg(long, default_value_t = 120)]
        wait_secs: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the switch at {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("the switch answered {status} to {url}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("reconciliation of window {0} did not finish in time")]
    Timeout(String),
}

struct Switch {
    http: reqwest::Client,
    base: String,
}

impl Switch {
    async fn call(&self, post: Option<serde_json::Value>, path: &str) -> Result<String, CliError> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let request = match post {
            Some(body) => self.http.post(&url).json(&body),
            None => self.http.get(&url),
        };
        let transport = |e: reqwest::Error| CliError::Transport {
            url: url.clone(),
            detail: transport_text(&e),
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(transport)?;
        if status >= 300 {
            return Err(CliError::Refused { url, status, body });
        }
        Ok(body)
    }

    async fn json(
        &self,
        post: Option<serde_json::Value>,
        path: &str,
    ) -> Result<serde_json::Value, CliError> {
        let text = self.call(post, path).await?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }
}

/// Runs one subcommand; prints to stdout.
pub async fn run(args: SettlementArgs) -> Result<(), CliError> {
    let http =
        operator_client(Duration::from_secs(60), 2, args.admin_token.as_deref()).map_err(|e| {
            CliError::Transport {
                url: args.switch.clone(),
                detail: transport_text(&e),
            }
        })?;
    let switch = Switch {
        http,
        base: args.switch.clone(),
    };
    match &args.command {
        SettlementCommand::Close => {
            let answer = switch
                .json(Some(serde_json::json!({})), "/v1/admin/settlement/close")
                .await?;
            let closed = answer["closed"].as_str().unwrap_or_default().to_string();
            if !args.json {
                println!(
                    "closed window {closed}, opened window {}",
                    answer["opened"].as_str().unwrap_or("?")
                );
            }
            show_window(&switch, &closed, args.json).await
        }
        SettlementCommand::Show { window: None } => {
            let list = switch.json(None, "/v1/settlement/windows").await?;
            if args.json {
                println!("{list}");
                return Ok(());
            }
            println!(
                "{:>8}  {:<6}  {:<30}  closed_at",
                "window", "status", "opened_at"
            );
            for w in list["windows"].as_array().into_iter().flatten() {
                println!(
                    "{:>8}  {:<6}  {:<30}  {}",
                    w["window_id"].as_str().unwrap_or("?"),
                    w["status"].as_str().unwrap_or("?"),
                    w["opened_at"].as_str().unwrap_or("?"),
                    w["closed_at"].as_str().unwrap_or("-")
                );
            }
            Ok(())
        }
        SettlementCommand::Show { window: Some(id) } => show_window(&switch, id, args.json).await,
        SettlementCommand::Report { window, bank } => {
            let csv = switch
                .call(
                    None,
                    &format!("/v1/settlement/windows/{window}/report.csv?bank={bank}"),
                )
                .await?;
            print!("{csv}");
            Ok(())
        }
        SettlementCommand::Recon {
            window,
            run,
            wait_secs,
        } => {
            let path = format!("/v1/reconciliation/{window}");
            if *run {
                switch
                    .json(
                        Some(serde_json::json!({ "window_id": window })),
                        "/v1/admin/reconciliation/run",
                    )
                    .await?;
            }
            let deadline = Instant::now() + Duration::from_secs(*wait_secs);
            loop {
                let result = switch.json(None, &path).await?;
                if result["status"] == "DONE" || !*run {
                    print_recon(&result, args.json);
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(CliError::Timeout(window.clone()));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn show_window(switch: &Switch, id: &str, json: bool) -> Result<(), CliError> {
    let w = switch
        .json(None, &format!("/v1/settlement/windows/{id}"))
        .await?;
    if json {
        println!("{w}");
        return Ok(());
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "window {} {}  opened {}  closed {}  payments {}  gross {}",
        text(&w["window_id"]),
        text(&w["status"]),
        text(&w["opened_at"]),
        text(&w["closed_at"]),
        w["txn_count"],
        text(&w["gross"])
    );
    println!(
        "{:<8} {:>16} {:>16} {:>16} {:>8}",
        "bank", "debits", "credits", "net", "txns"
    );
    for p in w["positions"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {:>16} {:>16} {:>16} {:>8}",
            text(&p["bank_code"]),
            text(&p["debits"]),
            text(&p["credits"]),
            text(&p["net"]),
            p["txn_count"]
        );
    }
    Ok(())
}

fn print_recon(r: &serde_json::Value, json: bool) {
    if json {
        println!("{r}");
        return;
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let mismatches = r["mismatches"].as_array().cloned().unwrap_or_default();
    println!(
        "reconciliation of window {}: {}  matched {}  mismatches {}  ({} ppm)",
        text(&r["window_id"]),
        text(&r["status"]),
        r["matched"],
        mismatches.len(),
        r["mismatch_ppm"]
    );
    for m in &mismatches {
        println!(
            "  {:<18} {:<8} {}  {}",
            text(&m["kind"]),
            text(&m["bank_code"]),
            text(&m["op_id"]),
            text(&m["detail"])
        );
    }
}
