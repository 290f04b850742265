//! The payment types a traffic tool sends, and in what shares: `--mix
//! p2p=70,p2m=20,collect=5,refund=5` (weights, any subset of the four),
//! shared by `loadgen`, `bench` and `demo`. Pure: the type of arrival `i` is
//! drawn from the run's seed ([`Mix::pick`]); a refund needs an earlier
//! `SUCCESS` P2P or P2M of the same run, kept in [`Originals`], and an arrival
//! that finds none yet becomes a P2P or P2M instead ([`Mix::fallback`]).
//! The bodies each type posts are here too; the sending is the tools' own.

use crate::domain::Paise;
use crate::saga::PaymentType;
use serde::Serialize;
use std::fmt;

/// The mix, and the demo's default: every type shows.
pub const ALL_TYPES: &str = "p2p=70,p2m=20,collect=5,refund=5";
/// The MCC the rig and the demo register their merchants with (grocery stores).
pub const MERCHANT_MCC: &str = "5411";
/// A collect request's life before it expires (the API allows 60-86400 s).
pub const COLLECT_EXPIRES_IN_S: u32 = 300;
/// Largest weight of one type (weights are shares, not counts).
const MAX_WEIGHT: u32 = 1_000_000;

/// The flag's names, in the order the mix is shown.
const NAMES: [(&str, PaymentType); 4] = [
    ("p2p", PaymentType::P2P),
    ("p2m", PaymentType::P2M),
    ("collect", PaymentType::Collect),
    ("refund", PaymentType::Refund),
];

/// Weights of the four payment types (in [`NAMES`] order); at least one is above 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 4],
}

impl Default for Mix {
    /// P2P only: what the tools always sent.
    fn default() -> Self {
        Mix {
            weights: [1, 0, 0, 0],
        }
    }
}

impl Mix {
    /// `p2p=70,p2m=20,collect=5,refund=5`: `type=weight` pairs, comma-separated,
    /// any subset of the four types (case-insensitive), each at most once,
    /// whole weights adding up to more than 0.
    pub fn parse(text: &str) -> Result<Mix, String> {
        let bad = |why: String| {
            format!(
                "--mix {text:?}: {why} (like {ALL_TYPES}: weights of p2p, p2m, collect, refund)"
            )
        };
        let mut weights = [None::<u32>; 4];
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(bad("an empty entry".into()));
            }
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not type=weight")))?;
            let name = name.trim().to_ascii_lowercase();
            let slot = NAMES
                .iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| bad(format!("unknown payment type {name:?}")))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .ok()
                .filter(|w| *w <= MAX_WEIGHT)
                .ok_or_else(|| {
                    bad(format!(
                        "the weight of {name} must be a whole number from 0 to {MAX_WEIGHT} (got {:?})",
                        weight.trim()
                    ))
                })?;
            if weights[slot].replace(weight).is_some() {
                return Err(bad(format!("{name} is given twice")));
            }
        }
        let weights = weights.map(|w| w.unwrap_or(0));
        if weights.iter().all(|w| *w == 0) {
            return Err(bad("every weight is 0".into()));
        }
        Ok(Mix { weights })
    }

    pub fn weight(&self, kind: PaymentType) -> u32 {
        NAMES
            .iter()
            .position(|(_, t)| *t == kind)
            .map_or(0, |i| self.weights[i])
    }

    /// The types with a weight above 0, in the mix's order.
    pub fn types(&self) -> Vec<PaymentType> {
        NAMES
            .iter()
            .filter(|(_, t)| self.weight(*t) > 0)
            .map(|(_, t)| *t)
            .collect()
    }

    /// Only P2P: the tools' old traffic.
    pub fn is_p2p_only(&self) -> bool {
        self.types() == [PaymentType::P2P]
    }

    /// P2M payments need merchant VPAs (and refunds may fall back to P2M).
    pub fn needs_merchants(&self) -> bool {
        self.weight(PaymentType::P2M) > 0
    }

    /// The type a random `draw` picks, each in proportion to its weight.
    pub fn pick(&self, draw: u64) -> PaymentType {
        let total: u64 = self.weights.iter().map(|w| u64::from(*w)).sum();
        let mut at = draw % total.max(1);
        for (i, w) in self.weights.iter().enumerate() {
            if at < u64::from(*w) {
                return NAMES[i].1;
            }
            at -= u64::from(*w);
        }
        PaymentType::P2P
    }

    /// What a refund becomes when the run knows no refundable payment yet: a
    /// P2P or a P2M in proportion to their weights (P2P when both are 0).
    pub fn fallback(&self, draw: u64) -> PaymentType {
        let (p2p, p2m) = (
            u64::from(self.weight(PaymentType::P2P)),
            u64::from(self.weight(PaymentType::P2M)),
        );
        if p2m > 0 && draw % (p2p + p2m) >= p2p {
            PaymentType::P2M
        } else {
            PaymentType::P2P
        }
    }
}

impl fmt::Display for Mix {
    /// The canonical form: `p2p=70,p2m=20` (types of weight 0 left out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = NAMES
            .iter()
            .zip(self.weights)
            .filter(|(_, w)| *w > 0)
            .map(|((name, _), w)| format!("{name}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// One refundable payment of this run and how much of it is not yet asked back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refundable {
    txn_id: String,
    amount: Paise,
    left: Paise,
}

/// The run's `SUCCESS` P2P and P2M payments that may still be refunded,
/// at most `cap` of them (a newer one replaces an older one when full).
#[derive(Debug, Clone)]
pub struct Originals {
    entries: Vec<Refundable>,
    cap: usize,
    added: u64,
}

impl Originals {
    pub fn new(cap: usize) -> Originals {
        Originals {
            entries: Vec::new(),
            cap: cap.max(1),
            added: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A `SUCCESS` P2P or P2M of `amount` may now be refunded.
    pub fn add(&mut self, txn_id: String, amount: Paise) {
        let entry = Refundable {
            txn_id,
            amount,
            left: amount,
        };
        if self.entries.len() < self.cap {
            self.entries.push(entry);
        } else {
            let slot = (self.added % self.cap as u64) as usize;
            self.entries[slot] = entry;
        }
        self.added += 1;
    }

    /// The next refund (original, amount) for a random `draw`: half of that
    /// original's amount, rounded up, or what is left of it if less, so that
    /// an original is refunded in two parts that add up to its amount, and
    /// never beyond it. An original with nothing left is dropped.
    pub fn take(&mut self, draw: u64) -> Option<(String, Paise)> {
        if self.entries.is_empty() {
            return None;
        }
        let i = (draw % self.entries.len() as u64) as usize;
        let entry = &mut self.entries[i];
        let amount = Paise(((entry.amount.0 + 1) / 2).min(entry.left.0));
        entry.left = Paise(entry.left.0 - amount.0);
        let txn_id = entry.txn_id.clone();
        if entry.left.0 <= 0 {
            self.entries.swap_remove(i);
        }
        Some((txn_id, amount))
    }
}

/// The body of `POST /v1/transactions` for any type it takes (P2P, P2M,
/// REFUND); fields a type does not have are left out.
#[derive(Debug, Clone, Serialize)]
pub struct TxnBody<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer_vpa: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payee_vpa: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_txn_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_ref: Option<&'a str>,
    /// Rupees as exact decimal text (`"150.75"`).
    pub amount: String,
    pub note: &'a str,
}

impl<'a> TxnBody<'a> {
    /// A P2P payment, or a P2M one to a merchant (its `merchant_ref` the order's).
    pub fn pay(
        kind: PaymentType,
        payer: &'a str,
        payee: &'a str,
        amount: Paise,
        merchant_ref: Option<&'a str>,
        note: &'a str,
    ) -> TxnBody<'a> {
        TxnBody {
            kind: kind.as_str(),
            payer_vpa: Some(payer),
            payee_vpa: Some(payee),
            original_txn_id: None,
            merchant_ref: merchant_ref.filter(|_| kind == PaymentType::P2M),
            amount: amount.to_rupees(),
            note,
        }
    }

    /// A refund of `amount` of `original`.
    pub fn refund(original: &'a str, amount: Paise, note: &'a str) -> TxnBody<'a> {
        TxnBody {
            kind: PaymentType::Refund.as_str(),
            payer_vpa: None,
            payee_vpa: None,
            original_txn_id: Some(original),
            merchant_ref: None,
            amount: amount.to_rupees(),
            note,
        }
    }
}

/// The body of `POST /v1/collects`: the payee asks the payer.
#[derive(Debug, Clone, Serialize)]
pub struct CollectBody<'a> {
    pub payee_vpa: &'a str,
    pub payer_vpa: &'a str,
    pub amount: String,
    pub expires_in_s: u32,
    pub note: &'a str,
}

impl<'a> CollectBody<'a> {
    pub fn new(payee: &'a str, payer: &'a str, amount: Paise, note: &'a str) -> CollectBody<'a> {
        CollectBody {
            payee_vpa: payee,
            payer_vpa: payer,
            amount: amount.to_rupees(),
            expires_in_s: COLLECT_EXPIRES_IN_S,
            note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_is_parsed_shown_and_checked() {
        let mix = Mix::parse("p2p=70,p2m=20,collect=5,refund=5").unwrap();
        assert_eq!(mix.to_string(), ALL_TYPES);
        assert_eq!(mix.weight(PaymentType::Refund), 5);
        assert!(mix.needs_merchants());
        let some = Mix::parse(" REFUND=1 , p2p=3 ").unwrap();
        assert_eq!(some.to_string(), "p2p=3,refund=1");
        assert_eq!(some.types(), [PaymentType::P2P, PaymentType::Refund]);
        assert!(!some.needs_merchants());
        assert!(Mix::default().is_p2p_only());
        assert!(Mix::parse("p2p=5,p2m=0").unwrap().is_p2p_only());
        for (bad, says) in [
            ("", "empty entry"),
            ("p2p=1,", "empty entry"),
            ("p2p", "not type=weight"),
            ("upi=3", "unknown payment type \"upi\""),
            ("p2p=-1", "whole number"),
            ("p2p=1.5", "whole number"),
            ("p2p=99999999", "whole number"),
            ("p2p=1,P2P=2", "p2p is given twice"),
            ("p2p=0,refund=0", "every weight is 0"),
        ] {
            let err = Mix::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
            assert!(err.starts_with("--mix"), "{err}");
        }
    }

    #[test]
    fn types_are_picked_in_proportion_and_refunds_fall_back_to_payments() {
        let mix = Mix::parse(ALL_TYPES).unwrap();
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..100 {
            *seen.entry(mix.pick(i).as_str()).or_insert(0) += 1;
        }
        let want = [("COLLECT", 5), ("P2M", 20), ("P2P", 70), ("REFUND", 5)];
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), want);
        let fallbacks: Vec<PaymentType> = (0..90).map(|i| mix.fallback(i)).collect();
        let p2m = fallbacks.iter().filter(|t| **t == PaymentType::P2M).count();
        assert_eq!(p2m, 20, "p2p:p2m is 70:20");
        let only_refunds = Mix::parse("refund=1").unwrap();
        assert_eq!(only_refunds.pick(12345), PaymentType::Refund);
        assert_eq!(only_refunds.fallback(7), PaymentType::P2P);
    }

    #[test]
    fn an_original_is_refunded_in_two_halves_and_never_beyond() {
        let mut o = Originals::new(2);
        assert_eq!(o.take(0), None);
        o.add("a".into(), Paise(101));
        assert_eq!(o.take(5), Some(("a".into(), Paise(51))));
        assert_eq!(o.take(5), Some(("a".into(), Paise(50))));
        assert!(o.is_empty());
        o.add("b".into(), Paise(1));
        assert_eq!(o.take(0), Some(("b".into(), Paise(1))));
        assert_eq!(o.take(0), None);
        // Full: newer originals replace older ones.
        for (id, amount) in [("c", 10), ("d", 20), ("e", 30)] {
            o.add(id.into(), Paise(amount));
        }
        assert_eq!(o.len(), 2);
        let ids: std::collections::BTreeSet<String> =
            (0..2).filter_map(|i| o.take(i)).map(|(id, _)| id).collect();
        assert!(!ids.contains("c"), "{ids:?}");
    }

    #[test]
    fn bodies_carry_only_their_type_s_fields() {
        let p2m = TxnBody::pay(
            PaymentType::P2M,
            "a@x",
            "shop@y",
            Paise(150),
            Some("lg-1"),
            "n",
        );
        let v = serde_json::to_value(&p2m).unwrap();
        assert_eq!(v["type"], "P2M");
        assert_eq!(v["amount"], "1.50");
        assert_eq!(v["merchant_ref"], "lg-1");
        assert!(v.get("original_txn_id").is_none());
        let p2p = TxnBody::pay(PaymentType::P2P, "a@x", "b@y", Paise(1), Some("k"), "n");
        assert!(
            serde_json::to_value(&p2p)
                .unwrap()
                .get("merchant_ref")
                .is_none()
        );
        let refund = serde_json::to_value(TxnBody::refund("t-1", Paise(50), "n")).unwrap();
        assert_eq!(refund["type"], "REFUND");
        assert_eq!(refund["original_txn_id"], "t-1");
        assert!(refund.get("payer_vpa").is_none());
        let collect =
            serde_json::to_value(CollectBody::new("b@y", "a@x", Paise(200), "n")).unwrap();
        assert_eq!(collect["payee_vpa"], "b@y");
        assert_eq!(collect["amount"], "2.00");
        assert_eq!(collect["expires_in_s"], COLLECT_EXPIRES_IN_S);
    }
}
