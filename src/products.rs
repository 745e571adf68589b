//! `kart products`: publishing the catalog and single updates to
//! `product-updates`, and the current state of every product as the
//! inventory job reports it on `products` and `inventory-events`.
//!
//! A message on `product-updates` *sets* a product (absolute stock and price,
//! workshop spec §1.3), so an update always carries all 11 fields: a partial
//! record would blank the fields it left out in the API's product cache.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, CatalogSource};
use crate::config::Settings;
use crate::db::{query_error, PgSettings};
use crate::exit::{KartError, Result};
use crate::inventory::model::Product;
use crate::inventory::parse::{parse_products, MAX_COUNT};
use crate::kafka::producer::{publish, OutRecord};
use crate::kafka::reader::{read_to_end, Record};
use crate::kafka::KafkaSettings;
use crate::printer::Printer;

/// Where product changes are requested (read by the inventory job).
pub const UPDATES_TOPIC: &str = "product-updates";
/// Full product records, one per product message the job applied.
pub const PRODUCTS_TOPIC: &str = "products";
/// Stock and price changes, including those caused by orders.
pub const EVENTS_TOPIC: &str = "inventory-events";

// ---- load ------------------------------------------------------------------

/// What `products load` published.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub topic: &'static str,
    pub source: String,
    pub published: usize,
    pub products: Vec<String>,
}

/// The products to load: `--file` (the workshop's format, parsed strictly),
/// else the configured catalog (`INITIAL_PRODUCTS_FILE` or kart's own).
pub fn catalog_to_load(settings: &Settings, file: Option<&std::path::Path>) -> Result<(Vec<Product>, CatalogSource)> {
    match file {
        Some(path) => {
            let products = catalog::from_file(path).map_err(|e| {
                e.with_hint("--file takes a JSON array of products in the workshop's format (like its data/initial-products.json); nothing was published")
            })?;
            Ok((products, CatalogSource::File(path.display().to_string())))
        }
        None => catalog::configured(settings),
    }
}

/// Publishes one message per product, keyed by productId, in file order.
pub async fn load(kafka: &KafkaSettings, printer: &Printer, products: &[Product], source: &CatalogSource) -> Result<LoadReport> {
    let records = products.iter().map(record_of).collect::<Result<Vec<_>>>()?;
    publish(kafka, printer, UPDATES_TOPIC, &records).await?;
    Ok(LoadReport {
        topic: UPDATES_TOPIC,
        source: source.to_string(),
        published: products.len(),
        products: products.iter().map(|p| p.product_id.clone()).collect(),
    })
}

/// The workshop's exact Product JSON, keyed by productId (design §4).
fn record_of(product: &Product) -> Result<OutRecord> {
    let value = serde_json::to_vec(product)
        .map_err(|e| KartError::infra("internal", format!("cannot encode {}: {e}", product.product_id)))?;
    Ok(OutRecord::keyed(product.product_id.clone(), value))
}

// ---- current state ---------------------------------------------------------

/// One product as the topics describe it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductState {
    pub product_id: String,
    pub name: String,
    /// The current stock: the latest of a `products` record's `inventory`
    /// and an inventory event's `currentInventory`.
    pub inventory: Option<i64>,
    pub price: Option<f64>,
    /// The latest inventory event's type (`PRODUCT_ADDED`, `INVENTORY_DECREASED`, …).
    pub last_event: Option<String>,
    /// When that event happened, epoch milliseconds.
    pub last_event_at: Option<i64>,
    /// The latest full record on `products`: what an update starts from.
    #[serde(skip)]
    pub record: Option<Product>,
}

/// The fields of an `inventory-events` record that `products` needs. Read
/// leniently: the workshop's job and kart's write the same 13 fields, and a
/// reader that refused one of them would hide the product's stock.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventFields {
    product_id: String,
    #[serde(default)]
    product_name: Option<String>,
    event_type: String,
    #[serde(default)]
    current_inventory: Option<i64>,
    #[serde(default)]
    current_price: Option<f64>,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// Every product's state, and how many records could not be read as
/// products or inventory events (they are left out, not fatal).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub products: BTreeMap<String, ProductState>,
    pub skipped: usize,
}

/// Reads `products` and `inventory-events` to their end (read_committed)
/// and folds them into the state of every product.
pub async fn snapshot(kafka: &KafkaSettings, printer: &Printer) -> Result<Snapshot> {
    let records = read_to_end(kafka, printer, &[PRODUCTS_TOPIC, EVENTS_TOPIC]).await?;
    let snapshot = fold(&records);
    if snapshot.skipped > 0 {
        printer.warn(&format!(
            "left out {} records of {PRODUCTS_TOPIC}/{EVENTS_TOPIC} that are not products or inventory events (`-v` shows why)",
            snapshot.skipped
        ));
    }
    Ok(snapshot)
}

/// Folds both topics in time order; a later record wins, and at the same
/// millisecond an inventory event wins over a product record (the job
/// writes the product record first, then the event it caused).
///
/// Time order is the record timestamp, made monotonic within each partition
/// so that a producer's clock going backwards never reorders one
/// partition's records: within a partition, offsets are the truth.
pub fn fold(records: &[Record]) -> Snapshot {
    let mut latest: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    let mut ordered: Vec<(i64, u8, usize)> = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let seen = latest.entry((record.topic.as_str(), record.partition)).or_insert(i64::MIN);
            *seen = (*seen).max(record.timestamp.unwrap_or(i64::MIN));
            let rank = u8::from(record.topic == EVENTS_TOPIC);
            (*seen, rank, index)
        })
        .collect();
    // Stable: records that tie keep the reader's (per-partition offset) order.
    ordered.sort_by_key(|&(time, rank, _)| (time, rank));

    let mut snapshot = Snapshot::default();
    for (_, _, index) in ordered {
        let record = &records[index];
        let Some(value) = record.value.as_deref() else { continue };
        if record.topic == EVENTS_TOPIC {
            match serde_json::from_slice::<EventFields>(value) {
                Ok(event) if !event.product_id.trim().is_empty() => {
                    let state = entry(&mut snapshot.products, &event.product_id);
                    if state.name.is_empty() {
                        state.name = event.product_name.unwrap_or_default();
                    }
                    // A null leaves the value alone: the workshop's stale
                    // events carry a null price that means "unchanged".
                    state.inventory = event.current_inventory.or(state.inventory);
                    state.price = event.current_price.or(state.price);
                    state.last_event = Some(event.event_type);
                    state.last_event_at = event.timestamp.filter(|t| *t > 0).or(record.timestamp);
                }
                _ => snapshot.skipped += 1,
            }
        } else {
            match parse_products(value) {
                Ok(products) => {
                    for product in products {
                        let state = entry(&mut snapshot.products, &product.product_id);
                        state.name = product.name.clone();
                        state.inventory = Some(product.inventory);
                        state.price = Some(product.price);
                        state.record = Some(product);
                    }
                }
                Err(_) => snapshot.skipped += 1,
            }
        }
    }
    snapshot
}

fn entry<'a>(products: &'a mut BTreeMap<String, ProductState>, id: &str) -> &'a mut ProductState {
    products.entry(id.to_string()).or_insert_with(|| ProductState {
        product_id: id.to_string(),
        name: String::new(),
        inventory: None,
        price: None,
        last_event: None,
        last_event_at: None,
        record: None,
    })
}

// ---- update ----------------------------------------------------------------

/// A checked `products update` request.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRequest {
    pub product_id: String,
    pub inventory: Option<i64>,
    pub price: Option<f64>,
}

impl UpdateRequest {
    /// Refuses what the inventory job would send to its dead-letter topic:
    /// negative or non-finite numbers, stock beyond Java's `int`.
    pub fn new(product_id: &str, inventory: Option<i64>, price: Option<f64>) -> Result<Self> {
        let product_id = product_id.trim();
        if product_id.is_empty() {
            return Err(KartError::user("bad-argument", "the product id is empty").with_hint("e.g. `kart products update PROD_0001 --inventory 25`"));
        }
        if inventory.is_none() && price.is_none() {
            return Err(KartError::user("nothing-to-update", format!("nothing to update for {product_id}: give --inventory, --price or both"))
                .with_hint(format!("e.g. `kart products update {product_id} --inventory 25 --price 19.99`")));
        }
        if let Some(n) = inventory {
            if !(0..=MAX_COUNT).contains(&n) {
                return Err(KartError::user("bad-flag", format!("--inventory {n}: must be between 0 and {MAX_COUNT}"))
                    .with_hint("inventory is the absolute stock level, not a change"));
            }
        }
        if let Some(p) = price {
            if !p.is_finite() || p < 0.0 {
                return Err(KartError::user("bad-flag", format!("--price {p}: must be a number >= 0")));
            }
        }
        Ok(UpdateRequest { product_id: product_id.to_string(), inventory, price })
    }
}

/// Where the fields an update did not change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The latest record on `products` (stock and price from the latest
    /// inventory event when that is newer).
    Products,
    /// The catalog: the job has not published this product yet.
    Catalog,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StockAndPrice {
    pub inventory: i64,
    pub price: f64,
}

/// What `products update` published.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateReport {
    pub topic: &'static str,
    pub product_id: String,
    pub based_on: Basis,
    pub before: StockAndPrice,
    pub after: StockAndPrice,
    /// The full record published.
    pub product: Product,
}

/// The full product to publish: the given fields changed, everything else
/// as it is now.
///
/// "As it is now" for stock means the latest inventory event when it is
/// newer than the product record: `products` never reflects orders, and
/// republishing its stale `inventory` with a new price would undo every
/// deduction since.
pub fn plan_update(request: &UpdateRequest, state: Option<&ProductState>, catalog: &[Product]) -> Result<UpdateReport> {
    let (base, basis, before) = match state.and_then(|s| s.record.as_ref().map(|r| (s, r))) {
        Some((state, record)) => (
            record.clone(),
            Basis::Products,
            StockAndPrice { inventory: state.inventory.unwrap_or(record.inventory), price: state.price.unwrap_or(record.price) },
        ),
        None => match catalog.iter().rev().find(|p| p.product_id == request.product_id) {
            // Inventory events without a product record (the topic was
            // recreated, or compacted away): their stock is still the truth.
            Some(product) => (
                product.clone(),
                Basis::Catalog,
                StockAndPrice {
                    inventory: state.and_then(|s| s.inventory).unwrap_or(product.inventory),
                    price: state.and_then(|s| s.price).unwrap_or(product.price),
                },
            ),
            None => {
                return Err(KartError::user("unknown-product", format!("unknown product {}", request.product_id)).with_hint(
                    "it is neither on the products topic nor in the catalog; `kart products list` shows the known ids (`kart products load` publishes the catalog)",
                ))
            }
        },
    };
    let after = StockAndPrice { inventory: request.inventory.unwrap_or(before.inventory), price: request.price.unwrap_or(before.price) };
    let product = Product { inventory: after.inventory, price: after.price, ..base };
    Ok(UpdateReport { topic: UPDATES_TOPIC, product_id: request.product_id.clone(), based_on: basis, before, after, product })
}

/// Publishes the full record of one product with the requested changes.
pub async fn update(kafka: &KafkaSettings, printer: &Printer, settings: &Settings, request: &UpdateRequest) -> Result<UpdateReport> {
    let snapshot = snapshot(kafka, printer).await?;
    let state = snapshot.products.get(&request.product_id);
    // The catalog is only consulted when the topic has no full record, so a
    // broken INITIAL_PRODUCTS_FILE does not block updates of known products.
    let catalog = if state.is_some_and(|s| s.record.is_some()) { Vec::new() } else { catalog::configured(settings)?.0 };
    let report = plan_update(request, state, &catalog)?;
    publish(kafka, printer, UPDATES_TOPIC, &[record_of(&report.product)?]).await?;
    Ok(report)
}

/// The outcome of setting the price in PostgreSQL: never fatal, because the
/// inventory job (Kafka) is what the shop shows, while the database price
/// only feeds the next checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DbPriceOutcome {
    pub updated: bool,
    pub endpoint: String,
    pub database: String,
    /// Why it was not updated.
    pub error: Option<String>,
    /// What to do about it.
    #[serde(skip)]
    pub hint: Option<String>,
}

/// `UPDATE products SET price = … WHERE product_id = …` in the workshop
/// database, so that checkout (which prices orders from the database) agrees
/// with the shop.
pub async fn set_db_price(pg: &PgSettings, product_id: &str, price: f64) -> DbPriceOutcome {
    let outcome = |error: Option<KartError>| DbPriceOutcome {
        updated: error.is_none(),
        endpoint: pg.endpoint(),
        database: pg.database.clone(),
        error: error.as_ref().map(|e| e.message.clone()),
        hint: error.and_then(|e| e.hint),
    };
    let client = match pg.connect().await {
        Ok(client) => client,
        Err(e) => return outcome(Some(e)),
    };
    // DECIMAL has no binary binding in tokio-postgres; a text cast is exact.
    let result = client
        .execute("UPDATE products SET price = $1::text::numeric(10,2) WHERE product_id = $2", &[&format!("{price:.2}"), &product_id])
        .await;
    match result {
        Ok(0) => outcome(Some(
            KartError::user("db-product-missing", format!("the products table of {} has no row {product_id}", pg.database))
                .with_hint("the database was seeded from another catalog; `kart db init` seeds kart's (or INITIAL_PRODUCTS_FILE's)"),
        )),
        Ok(_) => outcome(None),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => outcome(Some(
            KartError::user("db-not-initialised", format!("database {} has no products table", pg.database)).with_hint("create the schema with `kart db init`"),
        )),
        Err(e) => outcome(Some(query_error("cannot update the price", e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn product(id: &str, inventory: i64, price: f64) -> Product {
        Product {
            product_id: id.into(),
            name: format!("{id} name"),
            description: "d".into(),
            price,
            category: "Toys".into(),
            brand: None,
            image_url: "u".into(),
            inventory,
            tags: vec!["t".into()],
            rating: 4.0,
            review_count: 3,
        }
    }

    fn record(topic: &str, offset: i64, timestamp: i64, value: &str) -> Record {
        Record {
            topic: topic.into(),
            partition: 0,
            offset,
            timestamp: Some(timestamp),
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        }
    }

    fn product_json(id: &str, inventory: i64, price: f64) -> String {
        serde_json::to_string(&product(id, inventory, price)).unwrap()
    }

    fn event_json(id: &str, kind: &str, current: i64, price: Option<f64>, at: i64) -> String {
        serde_json::json!({
            "productId": id, "productName": format!("{id} name"), "eventType": kind,
            "previousInventory": 0, "currentInventory": current, "previousPrice": 0.0, "currentPrice": price,
            "timestamp": at, "changeReason": "r", "alertLevel": null, "inventoryChange": 0, "priceChange": 0.0, "critical": false
        })
        .to_string()
    }

    #[test]
    fn later_events_override_product_records_and_later_products_reset_them() {
        let records = vec![
            record(PRODUCTS_TOPIC, 0, 100, &product_json("P1", 10, 5.0)),
            record(EVENTS_TOPIC, 0, 100, &event_json("P1", "PRODUCT_ADDED", 10, Some(5.0), 100)),
            record(EVENTS_TOPIC, 1, 200, &event_json("P1", "INVENTORY_DECREASED", 7, Some(5.0), 200)),
            // Stale events carry a null price in the workshop: price stays.
            record(EVENTS_TOPIC, 2, 250, &event_json("P1", "STALE_INVENTORY", 7, None, 250)),
            record(PRODUCTS_TOPIC, 1, 50, &product_json("P2", 3, 1.0)),
        ];
        let snapshot = fold(&records);
        let p1 = &snapshot.products["P1"];
        assert_eq!((p1.inventory, p1.price), (Some(7), Some(5.0)));
        assert_eq!(p1.last_event.as_deref(), Some("STALE_INVENTORY"));
        assert_eq!(p1.last_event_at, Some(250));
        assert_eq!(p1.record.as_ref().unwrap().inventory, 10, "the product record itself is kept as published");
        let p2 = &snapshot.products["P2"];
        assert_eq!((p2.inventory, p2.last_event.as_deref()), (Some(3), None));

        // A product update after the orders sets the stock again.
        let mut later = records.clone();
        later.push(record(PRODUCTS_TOPIC, 2, 300, &product_json("P1", 25, 6.0)));
        let p1 = &fold(&later).products["P1"];
        assert_eq!((p1.inventory, p1.price), (Some(25), Some(6.0)));
    }

    #[test]
    fn a_clock_going_backwards_never_reorders_one_partition() {
        let records = vec![
            record(EVENTS_TOPIC, 0, 500, &event_json("P1", "INVENTORY_DECREASED", 9, Some(1.0), 500)),
            record(EVENTS_TOPIC, 1, 400, &event_json("P1", "INVENTORY_DECREASED", 8, Some(1.0), 400)),
        ];
        assert_eq!(fold(&records).products["P1"].inventory, Some(8));
    }

    #[test]
    fn unreadable_records_are_counted_not_fatal() {
        let records = vec![
            record(PRODUCTS_TOPIC, 0, 1, "not json"),
            record(PRODUCTS_TOPIC, 1, 2, r#"{"productId":"P","name":"n","price":1,"inventory":1,"extra":1}"#),
            record(EVENTS_TOPIC, 0, 3, r#"{"productId":"P"}"#),
            record(PRODUCTS_TOPIC, 2, 4, &product_json("P3", 1, 1.0)),
        ];
        let snapshot = fold(&records);
        assert_eq!(snapshot.skipped, 3);
        assert_eq!(snapshot.products.len(), 1);
    }

    /// Values as they may appear on the topics: valid products and events
    /// with arbitrary numbers and nulls, near-misses, and plain garbage.
    fn topic_value() -> impl Strategy<Value = Vec<u8>> {
        let id = prop_oneof![Just("P1".to_string()), Just("P2".to_string()), Just(" ".to_string()), "[A-Z0-9_]{0,6}"];
        let number = prop_oneof![Just(serde_json::Value::Null), any::<i64>().prop_map(serde_json::Value::from), any::<f64>().prop_map(serde_json::Value::from), (0i64..50).prop_map(serde_json::Value::from)];
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            (id.clone(), number.clone(), number.clone()).prop_map(|(id, inventory, price)| {
                serde_json::json!({"productId": id, "name": "n", "price": price, "inventory": inventory}).to_string().into_bytes()
            }),
            (id, ".{0,12}", number.clone(), number.clone(), number).prop_map(|(id, kind, current, price, at)| {
                serde_json::json!({"productId": id, "eventType": kind, "currentInventory": current, "currentPrice": price, "timestamp": at})
                    .to_string()
                    .into_bytes()
            }),
        ]
    }

    fn topic_record() -> impl Strategy<Value = Record> {
        let topic = prop_oneof![Just(PRODUCTS_TOPIC), Just(EVENTS_TOPIC)];
        (topic, 0i32..2, prop::option::of(any::<i64>()), prop::option::of(topic_value())).prop_map(|(topic, partition, timestamp, value)| Record {
            topic: topic.to_string(),
            partition,
            offset: 0,
            timestamp,
            key: None,
            value,
            headers: vec![],
        })
    }

    proptest! {
        #[test]
        fn fold_never_panics_and_only_keeps_real_ids(records in prop::collection::vec(topic_record(), 0..24)) {
            let snapshot = fold(&records);
            for (id, state) in &snapshot.products {
                prop_assert_eq!(id, &state.product_id);
                prop_assert!(!id.trim().is_empty());
            }
            prop_assert!(snapshot.skipped <= records.len());
        }

        #[test]
        fn in_one_ordered_partition_the_last_stock_wins(records in prop::collection::vec(topic_record(), 1..24)) {
            let records: Vec<Record> = records
                .into_iter()
                .enumerate()
                .map(|(i, r)| Record { partition: 0, offset: i as i64, timestamp: Some(i as i64), ..r })
                .collect();
            let snapshot = fold(&records);
            for (id, state) in &snapshot.products {
                // The last record of this product that carried a stock.
                let last = records.iter().rev().find_map(|r| {
                    let value = r.value.as_deref()?;
                    if r.topic == PRODUCTS_TOPIC {
                        parse_products(value).ok()?.into_iter().find(|p| &p.product_id == id).map(|p| p.inventory)
                    } else {
                        let event: EventFields = serde_json::from_slice(value).ok()?;
                        if &event.product_id == id { event.current_inventory } else { None }
                    }
                });
                prop_assert_eq!(state.inventory, last);
            }
        }
    }

    #[test]
    fn update_requests_are_checked() {
        assert_eq!(UpdateRequest::new("P", None, None).unwrap_err().code, "nothing-to-update");
        assert_eq!(UpdateRequest::new("P", Some(-1), None).unwrap_err().code, "bad-flag");
        assert_eq!(UpdateRequest::new("P", Some(MAX_COUNT + 1), None).unwrap_err().code, "bad-flag");
        assert_eq!(UpdateRequest::new("P", None, Some(-0.01)).unwrap_err().code, "bad-flag");
        assert_eq!(UpdateRequest::new("P", None, Some(f64::NAN)).unwrap_err().code, "bad-flag");
        assert_eq!(UpdateRequest::new(" ", Some(1), None).unwrap_err().code, "bad-argument");
        assert!(UpdateRequest::new("P", Some(0), Some(0.0)).is_ok());
    }

    #[test]
    fn an_update_changes_only_the_given_fields_and_keeps_the_current_stock() {
        let records = vec![
            record(PRODUCTS_TOPIC, 0, 100, &product_json("P1", 10, 5.0)),
            record(EVENTS_TOPIC, 0, 200, &event_json("P1", "INVENTORY_DECREASED", 7, Some(5.0), 200)),
        ];
        let snapshot = fold(&records);
        let state = snapshot.products.get("P1");

        let price_only = UpdateRequest::new("P1", None, Some(4.5)).unwrap();
        let report = plan_update(&price_only, state, &[]).unwrap();
        assert_eq!(report.based_on, Basis::Products);
        assert_eq!(report.before, StockAndPrice { inventory: 7, price: 5.0 });
        assert_eq!(report.after, StockAndPrice { inventory: 7, price: 4.5 }, "the orders' deductions are not undone");
        assert_eq!(report.product, Product { inventory: 7, price: 4.5, ..product("P1", 0, 0.0) });

        let stock_only = UpdateRequest::new("P1", Some(25), None).unwrap();
        let report = plan_update(&stock_only, state, &[]).unwrap();
        assert_eq!(report.product, Product { inventory: 25, price: 5.0, ..product("P1", 0, 0.0) });
    }

    #[test]
    fn an_update_falls_back_to_the_catalog_and_refuses_unknown_products() {
        let catalog = vec![product("C1", 4, 2.0)];
        let request = UpdateRequest::new("C1", Some(9), None).unwrap();
        let report = plan_update(&request, None, &catalog).unwrap();
        assert_eq!(report.based_on, Basis::Catalog);
        assert_eq!(report.product, Product { inventory: 9, ..catalog[0].clone() });

        let unknown = UpdateRequest::new("NOPE", Some(1), None).unwrap();
        let error = plan_update(&unknown, None, &catalog).unwrap_err();
        assert_eq!(error.message, "unknown product NOPE");
        assert!(error.hint.unwrap().contains("kart products list"));
    }
}
