//! The embedded jobs kart runs itself (design §9): the inventory processor's
//! Kafka driver, the CDC job (Postgres → `order-events`), and what every job
//! reports about itself.

pub mod inventory;
pub mod status;
pub mod embedded;
pub mod wal;
pub mod cdc;
