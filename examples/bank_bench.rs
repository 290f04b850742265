//! Debit throughput of one Bank API v1 endpoint (e.g. the simulator).
//!
//! Closed loop: `--concurrency` workers each send unique 1-paisa debits from
//! accounts ACC001..ACC<accounts> for `--seconds`, then it prints the rate and
//! latency percentiles of definitive answers. Errors are counted, not hidden.
//!
//! ```sh
//! upi-switch bank-sim --code BENCH --port 9201 --seed-accounts 1000 --balance-paise 100000000000 &
//! cargo run --release --example bank_bench -- --url http://127.0.0.1:9201 --concurrency 64 --seconds 20
//! ```

use std::time::{Duration, Instant};

struct Args {
    url: String,
    concurrency: usize,
    seconds: u64,
    accounts: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:9201".into(),
        concurrency: 64,
        seconds: 20,
        accounts: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--url" => a.url = value.clone(),
            "--concurrency" => a.concurrency = num()? as usize,
            "--seconds" => a.seconds = num()?,
            "--accounts" => a.accounts = num()? as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bank_bench: {e}");
            std::process::exit(2);
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (client, url, run, accounts) = (client.clone(), a.url.clone(), run.clone(), a.accounts);
        workers.push(tokio::spawn(async move {
            let mut lat_us = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            let txn = uuid::Uuid::new_v4().to_string();
            while Instant::now() < deadline {
                i += 1;
                let body = serde_json::json!({
                    "op_id": format!("b{}-{w}-{i}", &run[..8]),
                    "txn_id": txn,
                    "account": format!("ACC{:03}", 1 + (i as usize * 7 + w) % accounts),
                    "amount_paise": 1,
                });
                let t0 = Instant::now();
                match client
                    .post(format!("{url}/v1/debit"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().as_u16() == 200 || r.status().as_u16() == 422 => {
                        let _ = r.bytes().await;
                        lat_us.push(t0.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            (lat_us, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((l, e)) = w.await {
            lat.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "debits: {} answered in {:.1}s = {:.0}/s, errors {}, latency ms p50 {:.2} p99 {:.2} max {:.2} (concurrency {})",
        lat.len(),
        elapsed,
        lat.len() as f64 / elapsed,
        errors,
        pct(0.50),
        pct(0.99),
        pct(1.0),
        a.concurrency
    );
}
