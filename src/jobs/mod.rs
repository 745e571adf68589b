//! The embedded jobs kart runs itself (design §9): the inventory processor's
//! Kafka driver and its write-ahead commit protocol, the CDC job (Postgres →
//! `order-events`), their shared lifecycle and what every job reports; and
//! Flink jobs through the JobManager REST API.

pub mod cdc;
pub mod embedded;
pub mod flink;
pub mod inventory;
pub mod session;
pub mod status;
pub mod wal;
