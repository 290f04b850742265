//! What a rig holds, decided before anything starts: the two banks, their
//! accounts and VPAs (customers, and merchants that P2M payments go to), and
//! the files that describe them (`accounts-*.json` for the simulators' seed,
//! `vpas.txt` for `loadgen --vpas`, `merchants.txt` for `loadgen --merchants`,
//! `vpas.tsv` for scripts). Pure apart from writing those files; no process,
//! no network.

use serde_json::json;
use std::path::{Path, PathBuf};

/// A simulated bank of the rig: code, display name, PSP handle of its VPAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bank {
    pub code: &'static str,
    pub name: &'static str,
    pub psp: &'static str,
}

/// The rig's two banks, in the order their services start.
pub const BANKS: [Bank; 2] = [
    Bank {
        code: "HDFC",
        name: "HDFC Bank",
        psp: "hdfc",
    },
    Bank {
        code: "ICICI",
        name: "ICICI Bank",
        psp: "icici",
    },
];

/// What an account is for in the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ACTIVE with plenty of money.
    Ordinary,
    /// FROZEN: credits to it are declined (payments end REVERSED).
    Frozen,
    /// ACTIVE with ₹1.00: debits from it are declined (payments end FAILED).
    Poor,
    /// A merchant's account, plenty of money: its VPA is registered with
    /// `"merchant":true` and an MCC, so P2M payments may go to it.
    Merchant,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ordinary => "ordinary",
            Kind::Frozen => "frozen",
            Kind::Poor => "poor",
            Kind::Merchant => "merchant",
        }
    }
}

/// One account at one bank and the VPA that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Index into [`BANKS`].
    pub bank: usize,
    pub account: String,
    pub vpa: String,
    pub name: String,
    pub balance_paise: i64,
    pub kind: Kind,
}

impl Account {
    pub fn bank(&self) -> &'static Bank {
        &BANKS[self.bank]
    }
}

/// Opening balance of an ordinary account of [`numbered`]: ₹1,00,000.00.
pub const ORDINARY_PAISE: i64 = 10_000_000;
/// Opening balance of a poor account: ₹1.00.
pub const POOR_PAISE: i64 = 100;
/// Most accounts per bank of [`numbered`] (three-digit account numbers).
pub const MAX_ACCOUNTS: usize = 999;
/// Most merchants per bank of [`numbered`].
pub const MAX_MERCHANTS: usize = 99;

/// `n` accounts per bank, `ACC001`… named by `cust01@hdfc`…; the last `poor`
/// hold ₹1.00 and the `frozen` before them are FROZEN (the chaos layout);
/// then `merchants` more per bank, named by `shop01@hdfc`…
pub fn numbered(
    n: usize,
    frozen: usize,
    poor: usize,
    merchants: usize,
) -> Result<Vec<Account>, String> {
    if !(2..=MAX_ACCOUNTS).contains(&n) {
        return Err(format!("--accounts must be 2-{MAX_ACCOUNTS} (got {n})"));
    }
    if frozen + poor + 2 > n {
        return Err("--frozen + --poor must leave at least two ordinary accounts".into());
    }
    if merchants > MAX_MERCHANTS || n + merchants > MAX_ACCOUNTS {
        return Err(format!(
            "--merchants must be 0-{MAX_MERCHANTS}, and --accounts + --merchants at most {MAX_ACCOUNTS}"
        ));
    }
    let width = 3.max((n + merchants).to_string().len());
    let vwidth = 2.max(n.to_string().len());
    let mut out = Vec::with_capacity(2 * n);
    for (b, bank) in BANKS.iter().enumerate() {
        for i in 1..=n {
            let kind = if i > n - poor {
                Kind::Poor
            } else if i > n - poor - frozen {
                Kind::Frozen
            } else {
                Kind::Ordinary
            };
            out.push(Account {
                bank: b,
                account: format!("ACC{i:0width$}"),
                vpa: format!("cust{i:0vwidth$}@{}", bank.psp),
                name: format!("{} customer {i}", bank.code),
                balance_paise: if kind == Kind::Poor {
                    POOR_PAISE
                } else {
                    ORDINARY_PAISE
                },
                kind,
            });
        }
        for k in 1..=merchants {
            out.push(Account {
                bank: b,
                account: format!("ACC{:0width$}", n + k),
                vpa: format!("shop{k:02}@{}", bank.psp),
                name: format!("{} shop {k}", bank.code),
                balance_paise: ORDINARY_PAISE,
                kind: Kind::Merchant,
            });
        }
    }
    Ok(out)
}

/// The sum of every opening balance.
pub fn total_paise(accounts: &[Account]) -> i64 {
    accounts.iter().map(|a| a.balance_paise).sum()
}

/// The seed file of one bank, as `bank-sim --accounts` reads it.
pub fn seed_json(accounts: &[Account], bank: usize) -> String {
    let list: Vec<serde_json::Value> = accounts
        .iter()
        .filter(|a| a.bank == bank)
        .map(|a| {
            json!({
                "account": a.account,
                "name": a.name,
                "balance_paise": a.balance_paise,
                "status": if a.kind == Kind::Frozen { "FROZEN" } else { "ACTIVE" },
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// `vpas.txt`: one VPA a line, its bank, account and kind in a comment; the
/// customers (payers and payees of every type), not the merchants.
pub fn vpas_txt(accounts: &[Account]) -> String {
    let mut out = String::from(
        "# VPAs of this deployment (kind in the comment); loadgen --vpas reads this file\n",
    );
    for a in accounts.iter().filter(|a| a.kind != Kind::Merchant) {
        out.push_str(&format!(
            "{}  # {} {} {}\n",
            a.vpa,
            a.bank().code,
            a.account,
            a.kind.as_str()
        ));
    }
    out
}

/// `merchants.txt`: the merchants' VPAs (what `loadgen --merchants` reads).
pub fn merchants_txt(accounts: &[Account]) -> String {
    let mut out = String::from(&format!(
        "# Merchant VPAs of this deployment (MCC {}); loadgen --merchants reads this file\n",
        crate::loadgen::mix::MERCHANT_MCC
    ));
    for a in accounts.iter().filter(|a| a.kind == Kind::Merchant) {
        out.push_str(&format!("{}  # {} {}\n", a.vpa, a.bank().code, a.account));
    }
    out
}

/// `vpas.tsv`: vpa, bank code, account, name, kind.
pub fn vpas_tsv(accounts: &[Account]) -> String {
    accounts
        .iter()
        .map(|a| {
            format!(
                "{}\t{}\t{}\t{}\t{}\n",
                a.vpa,
                a.bank().code,
                a.account,
                a.name,
                a.kind.as_str()
            )
        })
        .collect()
}

/// The ordinary VPAs of a `vpas.tsv`, one a line (what a load should use).
pub fn ordinary_vpas(tsv: &str) -> Vec<String> {
    tsv.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols.len() == 5 && cols[4] == "ordinary").then(|| cols[0].to_string())
        })
        .collect()
}

/// Writes the seed files, `vpas.txt`, `merchants.txt` and `vpas.tsv` into `dir`; returns the
/// seed file of each bank, in [`BANKS`] order.
pub fn write_files(dir: &Path, accounts: &[Account]) -> std::io::Result<Vec<PathBuf>> {
    let mut seeds = Vec::new();
    for (b, bank) in BANKS.iter().enumerate() {
        let path = dir.join(format!("accounts-{}.json", bank.psp));
        std::fs::write(&path, seed_json(accounts, b))?;
        seeds.push(path);
    }
    std::fs::write(dir.join("vpas.txt"), vpas_txt(accounts))?;
    std::fs::write(dir.join("merchants.txt"), merchants_txt(accounts))?;
    std::fs::write(dir.join("vpas.tsv"), vpas_tsv(accounts))?;
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_numbered_layout_is_the_chaos_one() {
        let a = numbered(20, 2, 2, 0).unwrap();
        assert_eq!(a.len(), 40);
        assert_eq!(a[0].vpa, "cust01@hdfc");
        assert_eq!(a[0].account, "ACC001");
        assert_eq!(a[20].vpa, "cust01@icici");
        assert_eq!(a[17].kind, Kind::Frozen);
        assert_eq!(a[18].kind, Kind::Poor);
        assert_eq!(a[19].balance_paise, POOR_PAISE);
        assert_eq!(total_paise(&a), 2 * (18 * ORDINARY_PAISE + 2 * POOR_PAISE));
        let wide = numbered(200, 0, 0, 0).unwrap();
        assert_eq!(wide[199].vpa, "cust200@hdfc");
        assert_eq!(wide[199].account, "ACC200");
        assert!(numbered(1, 0, 0, 0).is_err());
        assert!(numbered(1000, 0, 0, 0).is_err());
        assert!(numbered(5, 2, 2, 0).is_err());
        assert!(numbered(990, 0, 0, 10).is_err());
        // Merchants come after each bank's customers, with the next account numbers.
        let shops = numbered(4, 1, 1, 2).unwrap();
        assert_eq!(shops.len(), 12);
        assert_eq!(shops[4].vpa, "shop01@hdfc");
        assert_eq!(shops[5].account, "ACC006");
        assert_eq!(shops[5].kind, Kind::Merchant);
        assert_eq!(shops[11].vpa, "shop02@icici");
    }

    #[test]
    fn files_name_every_account_once() {
        let a = numbered(4, 1, 1, 1).unwrap();
        let tsv = vpas_tsv(&a);
        assert_eq!(tsv.lines().count(), 10);
        assert!(tsv.contains("shop01@icici\tICICI\tACC005\tICICI shop 1\tmerchant\n"));
        assert!(!vpas_txt(&a).contains("shop01"));
        assert!(merchants_txt(&a).contains("\nshop01@hdfc  # HDFC ACC005\n"));
        assert!(tsv.starts_with("cust01@hdfc\tHDFC\tACC001\tHDFC customer 1\tordinary\n"));
        assert_eq!(
            ordinary_vpas(&tsv),
            ["cust01@hdfc", "cust02@hdfc", "cust01@icici", "cust02@icici"]
        );
        let seed: serde_json::Value = serde_json::from_str(&seed_json(&a, 1)).unwrap();
        assert_eq!(seed.as_array().map(Vec::len), Some(5));
        assert_eq!(seed[2]["status"], "FROZEN");
        assert_eq!(seed[3]["balance_paise"], POOR_PAISE);
        assert!(vpas_txt(&a).contains("cust04@icici  # ICICI ACC004 poor\n"));
    }
}
