//! Parsers for everything that comes from outside: `order-events` and
//! `product-updates` messages and the bootstrap catalog file.
//!
//! They never panic, whatever the bytes: a message that cannot be used
//! becomes a [`ParseError`] with a reason a human can act on, and the driver
//! sends it to `inventory-dlq` (design §6, "Poison messages"). Validation
//! lives here, not in the processor, because the workshop validated inside
//! its keyed operator and a single bad record crash-looped the job (workshop
//! spec §2.14).

use serde_json::{Map, Value};

use super::model::{OrderLine, Product};

/// Why a message could not be used; the text goes into the DLQ record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
}

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// The largest stock level or quantity kart accepts: Java's `int`, because
/// the workshop's API reads `inventory` as an `int` and would drop a product
/// carrying more. Bounding inputs also keeps every sum in the processor far
/// away from `i64` overflow.
pub const MAX_COUNT: i64 = i32::MAX as i64;

/// The changelog reserves keys starting with these prefixes for its own
/// records (de-duplication, see `dedup.rs`; the driver's batch records), so
/// no product may have such an id.
pub const RESERVED_ID_PREFIXES: [&str; 2] = ["dedup:", "kart:"];

/// Parses one `order-events` message (workshop spec §1.4).
///
/// Accepts both the API's and the CDC job's variants: a JSON object whose
/// `orderId` and `productId` are non-empty strings, whose `quantity` is an
/// integer from 1 to 2³¹−1, and whose `timestamp`, if present and not null,
/// is an integer (absent → 0). Other fields are ignored, as the workshop
/// does. Unlike the workshop's parser (missing fields become ""/0 and are then
/// dropped silently), every failure names its cause.
pub fn parse_order(bytes: &[u8]) -> Result<OrderLine, ParseError> {
    let object = parse_object(bytes)?;
    let order_id = required_id(&object, "orderId")?;
    let product_id = required_id(&object, "productId")?;
    let quantity = match object.get("quantity") {
        None | Some(Value::Null) => return Err(ParseError::new("quantity is missing")),
        Some(value) => match value.as_i64() {
            Some(quantity) if (1..=MAX_COUNT).contains(&quantity) => quantity,
            _ => {
                return Err(ParseError::new(format!(
                    "quantity must be a positive integer, got {}",
                    describe(value)
                )));
            }
        },
    };
    let timestamp = match object.get("timestamp") {
        None | Some(Value::Null) => 0,
        Some(value) => value.as_i64().ok_or_else(|| {
            ParseError::new(format!(
                "timestamp must be an integer (epoch milliseconds), got {}",
                describe(value)
            ))
        })?,
    };
    Ok(OrderLine {
        quantity,
        product_id,
        order_id,
        timestamp,
    })
}

/// Parses a `product-updates` message or the bootstrap file: one Product
/// object, or an array of them (workshop spec §2.3). All or nothing: one bad
/// element fails the whole message, so the DLQ record holds it intact.
///
/// Choices where the workshop's Jackson mapper was lax or silent:
/// - **Unknown fields are an error** naming the field, as in the workshop,
///   because the workshop's API drops any `products` record that has one.
/// - **Required**: `productId` and `name` (non-blank strings; the workshop's
///   event builder throws on a blank name), `price` (a number ≥ 0) and
///   `inventory` (an integer from 0 to 2³¹−1). Jackson would default a
///   missing `inventory` to 0, so a message that merely forgot the field
///   silently emptied the stock; kart refuses it instead.
/// - **Defaults** when absent or null: `description` "", `category` "",
///   `brand` null, `imageUrl` "", `tags` [], `rating` 0.0, `reviewCount` 0.
///   The strings default to "" rather than null because the API's search and
///   category filters throw on null (workshop spec §4.7).
/// - No coercions: `"5"` is not a number and `2.5` is not an integer (Jackson
///   would accept both).
/// - Blank input is an error ("empty message"); an empty array is zero
///   products.
pub fn parse_products(bytes: &[u8]) -> Result<Vec<Product>, ParseError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::new("empty message"));
    }
    match parse_json(bytes)? {
        Value::Object(object) => Ok(vec![product_from_object(&object)?]),
        Value::Array(elements) => elements
            .iter()
            .enumerate()
            .map(|(index, element)| match element {
                Value::Object(object) => product_from_object(object).map_err(|error| {
                    let id = object
                        .get("productId")
                        .and_then(Value::as_str)
                        .map(|id| format!(" ({id})"))
                        .unwrap_or_default();
                    ParseError::new(format!("product #{}{id}: {error}", index + 1))
                }),
                other => Err(ParseError::new(format!(
                    "product #{}: expected a JSON object, got {}",
                    index + 1,
                    kind(other)
                ))),
            })
            .collect(),
        other => Err(ParseError::new(format!(
            "expected a JSON object or an array of objects, got {}",
            kind(&other)
        ))),
    }
}

const PRODUCT_FIELDS: [&str; 11] = [
    "productId",
    "name",
    "description",
    "price",
    "category",
    "brand",
    "imageUrl",
    "inventory",
    "tags",
    "rating",
    "reviewCount",
];

fn product_from_object(object: &Map<String, Value>) -> Result<Product, ParseError> {
    if let Some(unknown) = object.keys().find(|key| !PRODUCT_FIELDS.contains(&key.as_str())) {
        return Err(ParseError::new(format!("unknown field \"{unknown}\"")));
    }
    let product_id = required_id(object, "productId")?;
    if let Some(prefix) = RESERVED_ID_PREFIXES.iter().find(|prefix| product_id.starts_with(**prefix)) {
        return Err(ParseError::new(format!(
            "productId must not start with \"{prefix}\" (reserved by kart's state changelog)"
        )));
    }
    let name = required_id(object, "name")?;
    let price = match object.get("price") {
        None | Some(Value::Null) => return Err(ParseError::new("price is missing")),
        Some(value) => match value.as_f64() {
            Some(price) if price.is_finite() && price >= 0.0 => price,
            _ => {
                return Err(ParseError::new(format!(
                    "price must be a number >= 0, got {}",
                    describe(value)
                )));
            }
        },
    };
    let inventory = match object.get("inventory") {
        None | Some(Value::Null) => return Err(ParseError::new("inventory is missing")),
        Some(value) => match value.as_i64() {
            Some(inventory) if (0..=MAX_COUNT).contains(&inventory) => inventory,
            _ => {
                return Err(ParseError::new(format!(
                    "inventory must be a non-negative integer, got {}",
                    describe(value)
                )));
            }
        },
    };
    let tags = match object.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(tag) => Ok(tag.clone()),
                other => Err(ParseError::new(format!(
                    "tags must be an array of strings, got an element {}",
                    describe(other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ParseError::new(format!(
                "tags must be an array of strings, got {}",
                describe(other)
            )));
        }
    };
    let rating = match object.get("rating") {
        None | Some(Value::Null) => 0.0,
        Some(value) => value.as_f64().filter(|rating| rating.is_finite()).ok_or_else(|| {
            ParseError::new(format!("rating must be a number, got {}", describe(value)))
        })?,
    };
    let review_count = match object.get("reviewCount") {
        None | Some(Value::Null) => 0,
        Some(value) => match value.as_i64() {
            Some(count) if (0..=MAX_COUNT).contains(&count) => count,
            _ => {
                return Err(ParseError::new(format!(
                    "reviewCount must be a non-negative integer, got {}",
                    describe(value)
                )));
            }
        },
    };
    Ok(Product {
        product_id,
        name,
        description: optional_string(object, "description")?.unwrap_or_default(),
        price,
        category: optional_string(object, "category")?.unwrap_or_default(),
        brand: optional_string(object, "brand")?,
        image_url: optional_string(object, "imageUrl")?.unwrap_or_default(),
        inventory,
        tags,
        rating,
        review_count,
    })
}

fn parse_json(bytes: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(bytes).map_err(|error| ParseError::new(format!("invalid JSON: {error}")))
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ParseError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::new("empty message"));
    }
    match parse_json(bytes)? {
        Value::Object(object) => Ok(object),
        other => Err(ParseError::new(format!(
            "expected a JSON object, got {}",
            kind(&other)
        ))),
    }
}

/// A string field that must be present and not blank.
fn required_id(object: &Map<String, Value>, field: &str) -> Result<String, ParseError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(ParseError::new(format!("{field} is missing"))),
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(other) => Err(ParseError::new(format!(
            "{field} must be a non-empty string, got {}",
            describe(other)
        ))),
    }
}

fn optional_string(object: &Map<String, Value>, field: &str) -> Result<Option<String>, ParseError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(ParseError::new(format!(
            "{field} must be a string, got {}",
            describe(other)
        ))),
    }
}

/// A short rendering of an offending value for error texts: numbers and
/// short strings verbatim, everything else by kind.
fn describe(value: &Value) -> String {
    match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) if text.chars().count() <= 40 => format!("\"{text}\""),
        Value::String(_) => "a long string".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        other => kind(other).to_owned(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn order_error(text: &str) -> String {
        parse_order(text.as_bytes()).unwrap_err().message
    }

    fn products_error(text: &str) -> String {
        parse_products(text.as_bytes()).unwrap_err().message
    }

    #[test]
    fn parses_the_cdc_and_api_order_variants() {
        let cdc = br#"{"quantity":1,"productId":"PROD_0151","orderId":"727237df-9fd6-44f8-8a46-6defe27c7585","timestamp":1762307641516}"#;
        assert_eq!(
            parse_order(cdc).unwrap(),
            OrderLine {
                quantity: 1,
                product_id: "PROD_0151".into(),
                order_id: "727237df-9fd6-44f8-8a46-6defe27c7585".into(),
                timestamp: 1762307641516,
            }
        );
        let api = br#"{"timestamp":5,"orderId":"o-1","extra":{"nested":[1,2]},"productId":"PROD_0001","quantity":3}"#;
        let line = parse_order(api).unwrap();
        assert_eq!((line.order_id.as_str(), line.quantity, line.timestamp), ("o-1", 3, 5));
        let no_timestamp = parse_order(br#"{"orderId":"o","productId":"p","quantity":2}"#).unwrap();
        assert_eq!(no_timestamp.timestamp, 0);
    }

    #[test]
    fn order_errors_name_their_cause() {
        assert_eq!(order_error(""), "empty message");
        assert!(order_error("{").starts_with("invalid JSON"));
        assert_eq!(order_error("[1]"), "expected a JSON object, got an array");
        assert_eq!(
            order_error(r#"{"orderId":"o","productId":"p","quantity":-2}"#),
            "quantity must be a positive integer, got -2"
        );
        assert_eq!(
            order_error(r#"{"orderId":"o","productId":"p","quantity":0}"#),
            "quantity must be a positive integer, got 0"
        );
        assert_eq!(
            order_error(r#"{"orderId":"o","productId":"p","quantity":1.5}"#),
            "quantity must be a positive integer, got 1.5"
        );
        assert_eq!(
            order_error(r#"{"orderId":"o","productId":"p","quantity":"3"}"#),
            "quantity must be a positive integer, got \"3\""
        );
        assert_eq!(
            order_error(r#"{"orderId":"o","productId":"p","quantity":3000000000}"#),
            "quantity must be a positive integer, got 3000000000"
        );
        assert_eq!(order_error(r#"{"orderId":"o","productId":"p"}"#), "quantity is missing");
        assert_eq!(order_error(r#"{"productId":"p","quantity":1}"#), "orderId is missing");
        assert_eq!(
            order_error(r#"{"orderId":"","productId":"p","quantity":1}"#),
            "orderId must be a non-empty string, got \"\""
        );
        assert_eq!(
            order_error(r#"{"orderId":"o","productId":7,"quantity":1}"#),
            "productId must be a non-empty string, got 7"
        );
        assert_eq!(
            order_error(r#"{"orderId":"o","productId":"p","quantity":1,"timestamp":"now"}"#),
            "timestamp must be an integer (epoch milliseconds), got \"now\""
        );
    }

    #[test]
    fn parses_one_product_or_an_array_and_applies_defaults() {
        let minimal = br#"{"productId":"PROD_0001","name":"Laptop","price":10,"inventory":3}"#;
        let products = parse_products(minimal).unwrap();
        assert_eq!(
            products,
            vec![Product {
                product_id: "PROD_0001".into(),
                name: "Laptop".into(),
                description: String::new(),
                price: 10.0,
                category: String::new(),
                brand: None,
                image_url: String::new(),
                inventory: 3,
                tags: vec![],
                rating: 0.0,
                review_count: 0,
            }]
        );
        let array = br#" [{"productId":"A","name":"a","price":1.5,"inventory":0,"tags":["x"],"brand":null,"rating":4},
                          {"productId":"B","name":"b","price":0,"inventory":7,"description":null}] "#;
        let products = parse_products(array).unwrap();
        assert_eq!(products.len(), 2);
        assert_eq!(products[0].tags, vec!["x".to_owned()]);
        assert_eq!(products[0].rating, 4.0);
        assert_eq!(products[1].description, "");
        assert_eq!(parse_products(b"[]").unwrap(), vec![]);
    }

    #[test]
    fn parses_the_bootstrap_file() {
        let bytes = super::super::workshop_catalog_bytes();
        let products = parse_products(&bytes).unwrap();
        assert_eq!(products.len(), 16);
        assert_eq!(products[0].product_id, "PROD_0001");
        assert_eq!(products[0].inventory, 10);
        let from_serde: Vec<Product> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(products, from_serde);
    }

    #[test]
    fn product_errors_name_their_cause() {
        assert_eq!(products_error("  \n"), "empty message");
        assert!(products_error("{nope").starts_with("invalid JSON"));
        assert_eq!(products_error("42"), "expected a JSON object or an array of objects, got a number");
        assert_eq!(
            products_error(r#"{"productId":"P","name":"n","price":1,"inventory":1,"color":"red"}"#),
            "unknown field \"color\""
        );
        assert_eq!(products_error(r#"{"productId":"P","name":"n","price":1}"#), "inventory is missing");
        assert_eq!(products_error(r#"{"productId":"P","name":"n","inventory":1}"#), "price is missing");
        assert_eq!(
            products_error(r#"{"productId":"P","name":"n","price":-1,"inventory":1}"#),
            "price must be a number >= 0, got -1"
        );
        assert_eq!(
            products_error(r#"{"productId":"P","name":"n","price":1,"inventory":-5}"#),
            "inventory must be a non-negative integer, got -5"
        );
        assert_eq!(
            products_error(r#"{"productId":"P","name":"n","price":1,"inventory":2.5}"#),
            "inventory must be a non-negative integer, got 2.5"
        );
        assert_eq!(
            products_error(r#"{"productId":"P","name":"  ","price":1,"inventory":1}"#),
            "name must be a non-empty string, got \"  \""
        );
        assert_eq!(products_error(r#"{"name":"n","price":1,"inventory":1}"#), "productId is missing");
        assert_eq!(
            products_error(r#"{"productId":"P","name":"n","price":1,"inventory":1,"tags":"a"}"#),
            "tags must be an array of strings, got \"a\""
        );
        assert_eq!(
            products_error(r#"{"productId":"P","name":"n","price":1,"inventory":1,"brand":5}"#),
            "brand must be a string, got 5"
        );
        assert!(products_error(r#"{"productId":"dedup:1","name":"n","price":1,"inventory":1}"#)
            .starts_with("productId must not start with \"dedup:\""));
        assert_eq!(
            products_error(r#"[{"productId":"A","name":"a","price":1,"inventory":1},{"productId":"B","name":"b","price":1,"inventory":-1}]"#),
            "product #2 (B): inventory must be a non-negative integer, got -1"
        );
        assert_eq!(products_error("[1]"), "product #1: expected a JSON object, got a number");
    }

    /// Arbitrary JSON values whose object keys are mostly the field names the
    /// parsers look at, so that the interesting branches are reached.
    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("orderId".to_owned()),
            Just("productId".to_owned()),
            Just("quantity".to_owned()),
            Just("timestamp".to_owned()),
            Just("name".to_owned()),
            Just("price".to_owned()),
            Just("inventory".to_owned()),
            Just("tags".to_owned()),
            Just("brand".to_owned()),
            Just("rating".to_owned()),
            Just("reviewCount".to_owned()),
            "[a-zA-Z:]{0,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (-3i64..20).prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..8)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_order(&bytes);
            let _ = parse_products(&bytes);
        }

        #[test]
        fn parsers_never_panic_on_json_ish_text(text in r#"[\[\]{}",:0-9a-zA-Z .eE+\-\\]{0,200}"#) {
            let _ = parse_order(text.as_bytes());
            let _ = parse_products(text.as_bytes());
        }

        #[test]
        fn parsers_never_panic_on_arbitrary_json(value in json_value()) {
            let bytes = serde_json::to_vec(&value).expect("a Value always serialises");
            if let Ok(order) = parse_order(&bytes) {
                prop_assert!(order.quantity > 0 && !order.order_id.trim().is_empty());
            }
            if let Ok(products) = parse_products(&bytes) {
                for product in products {
                    prop_assert!(product.inventory >= 0 && product.price >= 0.0);
                }
            }
        }
    }
}
