//! The records the inventory processor reads and writes, with the workshop's
//! exact JSON field names and field order (workshop spec §1.2–§1.7) plus
//! kart's own records (design §4 and §6).
//!
//! Field order matters only to humans and byte-level comparisons (consumers
//! read by name), but serde writes fields in declaration order, so the
//! declarations below follow the workshop's order on purpose.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A catalog product: the 11 fields of the workshop's `Product` (spec §1.2).
///
/// `price` and `rating` are `f64` so that an integer in the input (`4`) is
/// written back as `4.0`, as the workshop's Jackson mapper does. `brand` is
/// the only nullable field and its `null` is written explicitly. Unknown
/// fields are refused because the workshop's API drops any product carrying
/// one (spec §1.2, "Consumer constraint").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Product {
    pub product_id: String,
    pub name: String,
    pub description: String,
    pub price: f64,
    pub category: String,
    pub brand: Option<String>,
    pub image_url: String,
    pub inventory: i64,
    pub tags: Vec<String>,
    pub rating: f64,
    pub review_count: i64,
}

/// The `eventType` of an [`InventoryEvent`]. The workshop's enum has more
/// members (PRODUCT_UPDATED, LOW_STOCK_ALERT, SALE_STARTED) that its job never
/// emits; kart leaves them out and adds `ORDER_REJECTED` (design §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    ProductAdded,
    InventoryIncreased,
    InventoryDecreased,
    OutOfStock,
    BackInStock,
    PriceChanged,
    StaleInventory,
    OrderRejected,
}

/// One record of `inventory-events` (workshop spec §1.5): ten declared fields
/// followed by the three derived ones Jackson picks up from getters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEvent {
    pub product_id: String,
    pub product_name: String,
    pub event_type: EventType,
    pub previous_inventory: Option<i64>,
    pub current_inventory: Option<i64>,
    pub previous_price: Option<f64>,
    pub current_price: Option<f64>,
    pub timestamp: i64,
    pub change_reason: String,
    /// Always `null`: the workshop's job never sets it.
    pub alert_level: Option<String>,
    pub inventory_change: i64,
    pub price_change: f64,
    pub critical: bool,
}

/// A `previous → current` pair of optional values, so that the event
/// constructor reads as "what changed" rather than a row of positional
/// options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change<T> {
    pub previous: Option<T>,
    pub current: Option<T>,
}

impl<T> Change<T> {
    pub fn new(previous: T, current: T) -> Self {
        Change {
            previous: Some(previous),
            current: Some(current),
        }
    }

    pub fn only_current(current: T) -> Self {
        Change {
            previous: None,
            current: Some(current),
        }
    }
}

impl InventoryEvent {
    /// Builds an event and computes the derived fields the way the workshop's
    /// getters do: `inventoryChange`/`priceChange` are current − previous, or
    /// zero when either side is null; `critical` is true only for
    /// OUT_OF_STOCK, because `alertLevel` is never "CRITICAL".
    pub fn new(
        product: &Product,
        event_type: EventType,
        inventory: Change<i64>,
        price: Change<f64>,
        timestamp: i64,
        change_reason: String,
    ) -> Self {
        let inventory_change = match (inventory.previous, inventory.current) {
            (Some(previous), Some(current)) => current - previous,
            _ => 0,
        };
        let price_change = match (price.previous, price.current) {
            (Some(previous), Some(current)) => current - previous,
            _ => 0.0,
        };
        InventoryEvent {
            product_id: product.product_id.clone(),
            product_name: product.name.clone(),
            event_type,
            previous_inventory: inventory.previous,
            current_inventory: inventory.current,
            previous_price: price.previous,
            current_price: price.current,
            timestamp,
            change_reason,
            alert_level: None,
            inventory_change,
            price_change,
            critical: event_type == EventType::OutOfStock,
        }
    }
}

/// The `alertType` of an [`AlertEvent`]; `INSUFFICIENT_STOCK` is kart's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertType {
    LowStock,
    OutOfStock,
    PriceDrop,
    InsufficientStock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

/// One record of `inventory-alerts` (workshop spec §1.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    pub alert_type: AlertType,
    pub product_id: String,
    pub message: String,
    pub severity: Severity,
    pub timestamp: i64,
}

/// The `websocket_fanout` envelope around an inventory event (workshop spec
/// §1.7). Borrowed, because it only exists to be serialised next to the
/// `inventory-events` record it wraps.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebsocketEnvelope<'a> {
    pub event_type: &'static str,
    pub payload: &'a InventoryEvent,
    pub timestamp: i64,
}

impl<'a> WebsocketEnvelope<'a> {
    pub const INVENTORY_UPDATE: &'static str = "INVENTORY_UPDATE";

    pub fn inventory_update(payload: &'a InventoryEvent, timestamp: i64) -> Self {
        WebsocketEnvelope {
            event_type: Self::INVENTORY_UPDATE,
            payload,
            timestamp,
        }
    }
}

/// One line of an order on `order-events` (workshop spec §1.4). Declared in
/// the CDC job's field order (quantity, productId, orderId, timestamp) so
/// kart's CDC job writes the same bytes the workshop's did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub quantity: i64,
    pub product_id: String,
    pub order_id: String,
    pub timestamp: i64,
}

/// What happened to one order line (design §4, `kart-order-outcomes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Applied,
    Rejected,
    Duplicate,
    Dlq,
}

/// One record of `kart-order-outcomes`: what `order place --wait` reads.
/// Nulls are written explicitly so every record has the same keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderOutcome {
    pub order_id: String,
    pub product_id: String,
    pub quantity: i64,
    pub outcome: Outcome,
    pub previous_inventory: Option<i64>,
    pub current_inventory: Option<i64>,
    pub reason: Option<String>,
    pub timestamp: i64,
}

/// How the raw bytes of a dead-lettered value were carried into JSON; the
/// same vocabulary as `kart tail --format json` (design §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueEncoding {
    /// The bytes were JSON; `value` is that JSON.
    Json,
    /// The bytes were UTF-8 but not JSON; `value` is the string.
    Text,
    /// Neither; `value` is the standard base64 of the bytes.
    Base64,
    /// The record had no value at all (a tombstone); `value` is `null`.
    Null,
}

/// One record of `inventory-dlq` (design §6, "Poison messages").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqEntry {
    pub source_topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The source key as text, or its base64 when it is not UTF-8 (keys in
    /// this system are product ids, so the ambiguity is theoretical and the
    /// design fixes the field list without a `keyEncoding`); `null` when the
    /// record had no key.
    pub key: Option<String>,
    pub value: serde_json::Value,
    pub value_encoding: ValueEncoding,
    pub error: String,
    pub timestamp: i64,
}

/// Where a dead-lettered record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePosition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl DlqEntry {
    /// Builds a DLQ record from the raw key and value bytes of the poison
    /// record, keeping the value readable when it is JSON or text and
    /// lossless (base64) otherwise.
    pub fn from_raw(
        source: SourcePosition<'_>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        error: String,
        timestamp: i64,
    ) -> Self {
        let (value, value_encoding) = match value {
            None => (serde_json::Value::Null, ValueEncoding::Null),
            Some(bytes) => decode_value(bytes),
        };
        DlqEntry {
            source_topic: source.topic.to_owned(),
            partition: source.partition,
            offset: source.offset,
            key: key.map(|bytes| match std::str::from_utf8(bytes) {
                Ok(text) => text.to_owned(),
                Err(_) => base64::engine::general_purpose::STANDARD.encode(bytes),
            }),
            value,
            value_encoding,
            error,
            timestamp,
        }
    }
}

/// JSON if the bytes parse as JSON, else UTF-8 text, else base64.
pub fn decode_value(bytes: &[u8]) -> (serde_json::Value, ValueEncoding) {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) {
        return (json, ValueEncoding::Json);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (serde_json::Value::String(text.to_owned()), ValueEncoding::Text),
        Err(_) => (
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ValueEncoding::Base64,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;


    fn laptop() -> Product {
        Product {
            product_id: "PROD_0001".into(),
            name: "FutureTech UltraBook Pro 15".into(),
            description: "High-performance laptop with Intel i9, 32GB RAM, 1TB SSD. Premium quality from FutureTech.".into(),
            price: 1899.99,
            category: "Electronics".into(),
            brand: Some("FutureTech".into()),
            image_url: "https://picsum.photos/400/300?random=1".into(),
            inventory: 10,
            tags: vec![
                "laptop".into(),
                "computer".into(),
                "productivity".into(),
                "futuretech".into(),
                "electronics".into(),
            ],
            rating: 4.5,
            review_count: 49,
        }
    }

    #[test]
    fn product_serialises_exactly_like_the_workshop_example() {
        let expected = r#"{"productId":"PROD_0001","name":"FutureTech UltraBook Pro 15","description":"High-performance laptop with Intel i9, 32GB RAM, 1TB SSD. Premium quality from FutureTech.","price":1899.99,"category":"Electronics","brand":"FutureTech","imageUrl":"https://picsum.photos/400/300?random=1","inventory":10,"tags":["laptop","computer","productivity","futuretech","electronics"],"rating":4.5,"reviewCount":49}"#;
        assert_eq!(serde_json::to_string(&laptop()).unwrap(), expected);
    }

    #[test]
    fn null_brand_is_written_and_integer_rating_becomes_float() {
        let mut product = laptop();
        product.brand = None;
        product.rating = 4.0;
        let text = serde_json::to_string(&product).unwrap();
        assert!(text.contains(r#""brand":null"#), "{text}");
        assert!(text.contains(r#""rating":4.0"#), "{text}");
    }

    #[test]
    fn initial_products_round_trip_exactly() {
        let text = String::from_utf8(super::super::workshop_catalog_bytes()).expect("the catalog is UTF-8");
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let products: Vec<Product> = serde_json::from_str(&text).unwrap();
        assert_eq!(products.len(), 16);
        let written: serde_json::Value = serde_json::to_value(&products).unwrap();
        let (original, written) = (original.as_array().unwrap(), written.as_array().unwrap());
        assert_eq!(original.len(), written.len());
        for (before, after) in original.iter().zip(written) {
            let (before, after) = (before.as_object().unwrap(), after.as_object().unwrap());
            let mut before_keys: Vec<_> = before.keys().collect();
            let mut after_keys: Vec<_> = after.keys().collect();
            before_keys.sort();
            after_keys.sort();
            assert_eq!(before_keys, after_keys);
            for (name, value) in before {
                let rewritten = &after[name];
                if value.is_number() {
                    // serde_json keeps 4 and 4.0 apart; compare as numbers and
                    // check the float fields come back as floats.
                    assert_eq!(value.as_f64(), rewritten.as_f64(), "{name}");
                    if name == "rating" || name == "price" {
                        assert!(rewritten.is_f64(), "{name} should be a float");
                    } else {
                        assert!(rewritten.is_i64(), "{name} should be an integer");
                    }
                } else {
                    assert_eq!(value, rewritten, "{name}");
                }
            }
        }
        // The one integer rating of the file (PROD_0029, `4`) comes back as 4.0.
        let text_out = serde_json::to_string(&products[3]).unwrap();
        assert!(text_out.contains(r#""rating":4.0"#), "{text_out}");
    }

    #[test]
    fn inventory_decreased_matches_workshop_example_byte_for_byte() {
        let event = InventoryEvent::new(
            &laptop(),
            EventType::InventoryDecreased,
            Change::new(10, 7),
            Change::new(1899.99, 1899.99),
            1771550000123,
            "Deducted 3 for order 727237df-9fd6-44f8-8a46-6defe27c7585".into(),
        );
        let expected = r#"{"productId":"PROD_0001","productName":"FutureTech UltraBook Pro 15","eventType":"INVENTORY_DECREASED","previousInventory":10,"currentInventory":7,"previousPrice":1899.99,"currentPrice":1899.99,"timestamp":1771550000123,"changeReason":"Deducted 3 for order 727237df-9fd6-44f8-8a46-6defe27c7585","alertLevel":null,"inventoryChange":-3,"priceChange":0.0,"critical":false}"#;
        assert_eq!(serde_json::to_string(&event).unwrap(), expected);
    }

    #[test]
    fn websocket_envelope_matches_workshop_example() {
        let mut product = laptop();
        product.product_id = "PROD_0003".into();
        product.name = "InnovateTech Wireless Noise-Canceling Headphones".into();
        let event = InventoryEvent::new(
            &product,
            EventType::ProductAdded,
            Change::new(0, 8),
            Change::new(0.0, 349.99),
            1771550000100,
            "New product added to catalog".into(),
        );
        let envelope = WebsocketEnvelope::inventory_update(&event, 1771550000101);
        let expected = r#"{"eventType":"INVENTORY_UPDATE","payload":{"productId":"PROD_0003","productName":"InnovateTech Wireless Noise-Canceling Headphones","eventType":"PRODUCT_ADDED","previousInventory":0,"currentInventory":8,"previousPrice":0.0,"currentPrice":349.99,"timestamp":1771550000100,"changeReason":"New product added to catalog","alertLevel":null,"inventoryChange":8,"priceChange":349.99,"critical":false},"timestamp":1771550000101}"#;
        assert_eq!(serde_json::to_string(&envelope).unwrap(), expected);
    }

    #[test]
    fn derived_fields_are_zero_when_a_side_is_null_and_critical_only_for_out_of_stock() {
        let stale = InventoryEvent::new(
            &laptop(),
            EventType::StaleInventory,
            Change::only_current(7),
            Change::only_current(1899.99),
            1,
            "No updates for 1.0 hours".into(),
        );
        assert_eq!((stale.inventory_change, stale.price_change, stale.critical), (0, 0.0, false));
        let out = InventoryEvent::new(
            &laptop(),
            EventType::OutOfStock,
            Change::new(3, 0),
            Change::new(10.0, 12.5),
            1,
            "Product is now out of stock".into(),
        );
        assert_eq!((out.inventory_change, out.price_change, out.critical), (-3, 2.5, true));
    }

    #[test]
    fn alert_and_order_line_shapes() {
        let alert = AlertEvent {
            alert_type: AlertType::LowStock,
            product_id: "PROD_0003".into(),
            message: "Low stock: only 8 items remaining".into(),
            severity: Severity::Warning,
            timestamp: 1771550000200,
        };
        assert_eq!(
            serde_json::to_string(&alert).unwrap(),
            r#"{"alertType":"LOW_STOCK","productId":"PROD_0003","message":"Low stock: only 8 items remaining","severity":"WARNING","timestamp":1771550000200}"#
        );
        let line = OrderLine {
            quantity: 1,
            product_id: "PROD_0151".into(),
            order_id: "727237df-9fd6-44f8-8a46-6defe27c7585".into(),
            timestamp: 1762307641516,
        };
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            r#"{"quantity":1,"productId":"PROD_0151","orderId":"727237df-9fd6-44f8-8a46-6defe27c7585","timestamp":1762307641516}"#
        );
        let outcome = OrderOutcome {
            order_id: "o1".into(),
            product_id: "PROD_0001".into(),
            quantity: 3,
            outcome: Outcome::Duplicate,
            previous_inventory: None,
            current_inventory: None,
            reason: None,
            timestamp: 5,
        };
        assert_eq!(
            serde_json::to_value(&outcome).unwrap(),
            json!({"orderId":"o1","productId":"PROD_0001","quantity":3,"outcome":"duplicate",
                   "previousInventory":null,"currentInventory":null,"reason":null,"timestamp":5})
        );
    }

    #[test]
    fn dlq_entry_keeps_json_text_and_binary_values() {
        let source = SourcePosition { topic: "order-events", partition: 0, offset: 42 };
        let json_entry = DlqEntry::from_raw(source, Some(b"PROD_0001"), Some(br#"{"quantity":-2}"#), "bad".into(), 7);
        assert_eq!(
            serde_json::to_value(&json_entry).unwrap(),
            json!({"sourceTopic":"order-events","partition":0,"offset":42,"key":"PROD_0001",
                   "value":{"quantity":-2},"valueEncoding":"json","error":"bad","timestamp":7})
        );
        let text_entry = DlqEntry::from_raw(source, None, Some(b"not json {"), "bad".into(), 7);
        assert_eq!(text_entry.value, json!("not json {"));
        assert_eq!(text_entry.value_encoding, ValueEncoding::Text);
        assert_eq!(text_entry.key, None);
        let binary_entry = DlqEntry::from_raw(source, Some(&[0xff, 0x00]), Some(&[0xff, 0xfe, 0x00]), "bad".into(), 7);
        assert_eq!(binary_entry.value, json!("//4A"));
        assert_eq!(binary_entry.value_encoding, ValueEncoding::Base64);
        assert_eq!(binary_entry.key.as_deref(), Some("/wA="));
        let tombstone = DlqEntry::from_raw(source, None, None, "no value".into(), 7);
        assert_eq!((tombstone.value, tombstone.value_encoding), (serde_json::Value::Null, ValueEncoding::Null));
    }
}
