//! `BankRouter`: which `BankHealthSupervisor` serves which bank code. It
//! creates a supervisor when a bank is registered and hands it new endpoints
//! when the registration changes (the same endpoints again change nothing:
//! every node hears every registration, its own included, and reloads all of
//! them after a reconnect). Sagas and operators ask it for a bank's
//! supervisor; no call to a bank passes through the router itself.

use super::bank_supervisor::{BankHealthSupervisor, Reconfigure, SupervisorConfig};
use crate::adapters::store::BankEndpoint;
use actix::prelude::*;
use std::collections::BTreeMap;

pub struct BankRouter {
    banks: BTreeMap<String, Addr<BankHealthSupervisor>>,
    /// The endpoints each supervisor was last given.
    endpoints: BTreeMap<String, Vec<BankEndpoint>>,
    cfg: SupervisorConfig,
}

impl BankRouter {
    pub fn new(cfg: SupervisorConfig) -> BankRouter {
        BankRouter {
            banks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            cfg,
        }
    }
}

impl Actor for BankRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

/// Registers a bank or replaces its endpoints.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetBank {
    pub code: String,
    pub endpoints: Vec<BankEndpoint>,
}

impl Handler<SetBank> for BankRouter {
    type Result = ();

    fn handle(&mut self, msg: SetBank, _ctx: &mut Self::Context) {
        let same = self.endpoints.get(&msg.code) == Some(&msg.endpoints);
        self.endpoints
            .insert(msg.code.clone(), msg.endpoints.clone());
        match self.banks.get(&msg.code) {
            Some(sup) if sup.connected() && same => {}
            Some(sup) if sup.connected() => sup.do_send(Reconfigure(msg.endpoints)),
            _ => {
                let sup =
                    BankHealthSupervisor::new(msg.code.clone(), &msg.endpoints, self.cfg.clone())
                        .start();
                self.banks.insert(msg.code, sup);
            }
        }
    }
}

/// The supervisor of one bank, if registered.
#[derive(Message)]
#[rtype(result = "Option<Addr<BankHealthSupervisor>>")]
pub struct Lookup(pub String);

impl Handler<Lookup> for BankRouter {
    type Result = Option<Addr<BankHealthSupervisor>>;

    fn handle(&mut self, msg: Lookup, _ctx: &mut Self::Context) -> Self::Result {
        self.banks.get(&msg.0).cloned()
    }
}

/// Every registered bank's supervisor, by code.
#[derive(Message)]
#[rtype(result = "Vec<(String, Addr<BankHealthSupervisor>)>")]
pub struct AllBanks;

impl Handler<AllBanks> for BankRouter {
    type Result = MessageResult<AllBanks>;

    fn handle(&mut self, _: AllBanks, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.banks
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}
