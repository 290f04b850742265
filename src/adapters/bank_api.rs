//! Bank API v1 wire types (`docs/bank-api.md`), shared by the switch's
//! bank client and the bank simulator so both speak exactly one dialect.
//! Only data and (de)serialisation live here; no I/O.

use serde::{Deserialize, Serialize};

/// Kind of a recorded bank operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OpKind {
    Debit,
    Credit,
    Reverse,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Debit => "DEBIT",
            OpKind::Credit => "CREDIT",
            OpKind::Reverse => "REVERSE",
        }
    }

    pub fn parse(text: &str) -> Option<OpKind> {
        match text {
            "DEBIT" => Some(OpKind::Debit),
            "CREDIT" => Some(OpKind::Credit),
            "REVERSE" => Some(OpKind::Reverse),
            _ => None,
        }
    }
}

/// Status of a recorded operation as the bank reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OpStatus {
    Applied,
    Declined,
    /// An applied op that was later undone.
    Reversed,
    /// A reverse that had nothing to undo.
    Noop,
}

impl OpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::Applied => "APPLIED",
            OpStatus::Declined => "DECLINED",
            OpStatus::Reversed => "REVERSED",
            OpStatus::Noop => "NOOP",
        }
    }

    pub fn parse(text: &str) -> Option<OpStatus> {
        match text {
            "APPLIED" => Some(OpStatus::Applied),
            "DECLINED" => Some(OpStatus::Declined),
            "REVERSED" => Some(OpStatus::Reversed),
            "NOOP" => Some(OpStatus::Noop),
            _ => None,
        }
    }
}

/// Why a bank declined a debit or credit. `Other` keeps a foreign bank's code
/// that this version does not know, rather than failing to parse the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeclineCode {
    InsufficientFunds,
    AccountNotFound,
    AccountFrozen,
    AlreadyReversed,
    Other(String),
}

impl DeclineCode {
    pub fn as_str(&self) -> &str {
        match self {
            DeclineCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            DeclineCode::AccountNotFound => "ACCOUNT_NOT_FOUND",
            DeclineCode::AccountFrozen => "ACCOUNT_FROZEN",
            DeclineCode::AlreadyReversed => "ALREADY_REVERSED",
            DeclineCode::Other(code) => code,
        }
    }

    pub fn parse(text: &str) -> DeclineCode {
        match text {
            "INSUFFICIENT_FUNDS" => DeclineCode::InsufficientFunds,
            "ACCOUNT_NOT_FOUND" => DeclineCode::AccountNotFound,
            "ACCOUNT_FROZEN" => DeclineCode::AccountFrozen,
            "ALREADY_REVERSED" => DeclineCode::AlreadyReversed,
            other => DeclineCode::Other(other.to_string()),
        }
    }
}

impl Serialize for DeclineCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeclineCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(DeclineCode::parse(&text))
    }
}

/// `POST /v1/debit` and `POST /v1/credit` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRequest {
    pub op_id: String,
    pub txn_id: String,
    pub account: String,
    pub amount_paise: i64,
}

/// `POST /v1/reverse` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReverseRequest {
    pub op_id: String,
    pub original_op_id: String,
    pub txn_id: String,
    pub amount_paise: i64,
}

/// Answer to a debit/credit: `200 APPLIED` or `422 DECLINED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveAnswer {
    pub op_id: String,
    pub status: OpStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_paise: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<DeclineCode>,
}

/// Answer to a reverse: `200 REVERSED` or `200 NOOP`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReverseAnswer {
    pub op_id: String,
    pub status: OpStatus,
    pub original_op_id: String,
}

/// `GET /v1/ops/{op_id}` found body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpView {
    pub op_id: String,
    pub kind: Option<OpKind>,
    pub status: OpStatus,
    pub account: Option<String>,
    pub amount_paise: i64,
    pub code: Option<DeclineCode>,
    pub original_op_id: Option<String>,
}

/// One entry of `GET /v1/ops` (the change feed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEntry {
    pub seq: i64,
    pub op_id: String,
    pub kind: OpKind,
    pub status: OpStatus,
    pub account: Option<String>,
    pub amount_paise: i64,
    pub txn_id: Option<String>,
    pub code: Option<DeclineCode>,
    pub original_op_id: Option<String>,
    pub at: String,
}

/// `GET /v1/ops?after_seq&limit` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPage {
    pub ops: Vec<FeedEntry>,
    pub next_after_seq: i64,
}

/// `GET /v1/accounts/{account}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub account: String,
    pub name: String,
    pub status: String,
}

/// One account in `GET /admin/balances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalance {
    pub account: String,
    pub balance_paise: i64,
    /// `ACTIVE` or `FROZEN`.
    pub status: String,
}

/// `GET /admin/balances` body: every account of the bank and their sum. Not
/// part of Bank API v1 (whose `GET /v1/accounts/{account}` shows no balance):
/// an admin extension of the project's simulator, read by the demo and by
/// `upi-switch verify` where a bank offers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    pub bank_code: String,
    pub accounts: Vec<AccountBalance>,
    pub total_paise: i64,
}

/// Error body of `400`/`404`/`409`/`503`: `{"code":"…","detail":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
