//! kart's embedded inventory processor, without any I/O: the workshop's
//! records ([`model`]), Java-compatible number formatting ([`format`]),
//! parsers for outside input ([`parse`]), the de-duplication window
//! ([`dedup`]) and the processor itself ([`core`]).
//!
//! This module imports nothing else of kart (design §11, layer 1); a driver
//! around it does the Kafka I/O, the clock and the commits.

pub mod core;
pub mod dedup;
pub mod format;
pub mod model;
pub mod parse;

pub use self::core::{Config, Input, OnInsufficient, Outputs, Processor, StateChange};
pub use self::model::{
    AlertEvent, AlertType, Change, DlqEntry, EventType, InventoryEvent, OrderLine, OrderOutcome,
    Outcome, Product, Severity, SourcePosition, ValueEncoding, WebsocketEnvelope,
};
pub use self::parse::{ParseError, parse_order, parse_products};

/// The workshop's own bootstrap file, from the `shared/` folder that sits
/// beside the repository (tests only: kart ships its own catalog).
#[cfg(test)]
const INITIAL_PRODUCTS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/peer/data/initial-products.json");

/// The workshop's bootstrap file; a missing `shared/` folder fails the test
/// with what to do rather than skipping it.
#[cfg(test)]
fn workshop_catalog_bytes() -> Vec<u8> {
    std::fs::read(INITIAL_PRODUCTS_FILE).unwrap_or_else(|e| {
        panic!("cannot read the workshop's catalog {INITIAL_PRODUCTS_FILE} ({e}): the tests expect the shared/ folder beside the repository, as in CI")
    })
}
