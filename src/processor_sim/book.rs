//! `PaymentBook`: the actor that owns the simulator's payments (a `Ledger`)
//! and the clock of the shared health-check limit. Handlers on any worker
//! thread talk to it by messages; nobody else touches its state.
//!
//! In memory on purpose: the simulator models an external party for tests and
//! demos; a restart of the simulator forgets its payments, like a purge.

use super::ledger::{Ledger, Payment, Stored, Totals};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// At most one health answer per this period, whoever asks.
pub const HEALTH_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct PaymentBook {
    ledger: Ledger,
    last_health: Option<Instant>,
}

impl Actor for PaymentBook {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

/// Store a payment (once per id).
#[derive(Message)]
#[rtype(result = "Stored")]
pub struct Record {
    pub id: Uuid,
    pub payment: Payment,
}

impl Handler<Record> for PaymentBook {
    type Result = MessageResult<Record>;
    fn handle(&mut self, msg: Record, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.ledger.store(msg.id, msg.payment))
    }
}

#[derive(Message)]
#[rtype(result = "Option<Payment>")]
pub struct Lookup(pub Uuid);

impl Handler<Lookup> for PaymentBook {
    type Result = MessageResult<Lookup>;
    fn handle(&mut self, msg: Lookup, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.ledger.get(&msg.0).cloned())
    }
}

#[derive(Message)]
#[rtype(result = "Totals")]
pub struct Summarise {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Handler<Summarise> for PaymentBook {
    type Result = MessageResult<Summarise>;
    fn handle(&mut self, msg: Summarise, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.ledger.totals(msg.from, msg.to))
    }
}

#[derive(Message)]
#[rtype(result = "usize")]
pub struct Purge;

impl Handler<Purge> for PaymentBook {
    type Result = usize;
    fn handle(&mut self, _: Purge, _: &mut Self::Context) -> usize {
        self.ledger.purge()
    }
}

/// May a health check be answered now? (`false` = within the shared limit: 429.)
#[derive(Message)]
#[rtype(result = "bool")]
pub struct HealthSlot;

impl Handler<HealthSlot> for PaymentBook {
    type Result = bool;
    fn handle(&mut self, _: HealthSlot, _: &mut Self::Context) -> bool {
        let now = Instant::now();
        match self.last_health {
            Some(last) if now.duration_since(last) < HEALTH_EVERY => false,
            _ => {
                self.last_health = Some(now);
                true
            }
        }
    }
}
