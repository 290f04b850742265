//! `BankDirectory`: the actor that owns the table of registered banks and their
//! endpoint clients, ordered by priority. Sagas ask it which endpoints reach a
//! bank (`Resolve`) and make the call themselves, so no bank I/O funnels
//! through this one actor. Operators' `PUT /v1/admin/banks/{code}` updates it
//! (`SetBank`) after the registration is durable.

use crate::adapters::bank_client::BankClient;
use crate::adapters::store::BankEndpoint;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Endpoints of one bank, lowest priority number first.
pub type Endpoints = Arc<Vec<BankClient>>;

pub struct BankDirectory {
    http: reqwest::Client,
    call_timeout: Duration,
    banks: HashMap<String, Endpoints>,
}

impl BankDirectory {
    pub fn new(call_timeout: Duration) -> BankDirectory {
        BankDirectory {
            http: BankClient::http_client(),
            call_timeout,
            banks: HashMap::new(),
        }
    }
}

impl Actor for BankDirectory {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

/// Registers or replaces a bank's endpoints.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetBank {
    pub code: String,
    pub endpoints: Vec<BankEndpoint>,
}

impl Handler<SetBank> for BankDirectory {
    type Result = ();

    fn handle(&mut self, msg: SetBank, _ctx: &mut Self::Context) {
        let mut endpoints = msg.endpoints;
        endpoints.sort_by_key(|e| e.priority);
        let clients = endpoints
            .iter()
            .map(|e| BankClient::new(self.http.clone(), &e.url, self.call_timeout))
            .collect();
        self.banks.insert(msg.code, Arc::new(clients));
    }
}

/// Which endpoints reach this bank? `None` when the bank is not registered.
#[derive(Message)]
#[rtype(result = "Option<Endpoints>")]
pub struct Resolve(pub String);

impl Handler<Resolve> for BankDirectory {
    type Result = Option<Endpoints>;

    fn handle(&mut self, msg: Resolve, _ctx: &mut Self::Context) -> Self::Result {
        self.banks.get(&msg.0).cloned()
    }
}
