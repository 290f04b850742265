//! The outside world behind small interfaces: Postgres setup and the switch's
//! store, the Bank API v1 wire types and client, RabbitMQ plumbing, the
//! Redis cache and the process's memo of VPAs in front of it. Adapters know nothing of actors or HTTP handlers; the saga
//! core knows nothing of adapters.

pub mod amqp;
pub mod bank_api;
pub mod bank_client;
pub mod cache;
pub mod event_feed;
pub mod pg;
pub mod store;
pub mod vpa_memo;
