//! The lines of an order from the command line: `--product P --quantity Q`
//! or repeated `--item P:Q`, merged per product and checked before anything
//! is written.

use crate::exit::{KartError, Result};
use crate::inventory::parse::MAX_COUNT;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_id: String,
    pub quantity: i64,
}

/// `--product`/`--quantity` (quantity 1 when omitted) or `--item P:Q`…;
/// repeated products become one line with the summed quantity, in the order
/// they first appear.
pub fn parse_lines(product: Option<&str>, quantity: Option<i64>, items: &[String]) -> Result<Vec<Line>> {
    let mut raw: Vec<(String, i64)> = Vec::new();
    if let Some(product) = product {
        raw.push((product.trim().to_string(), quantity.unwrap_or(1)));
    }
    for item in items {
        raw.push(parse_item(item)?);
    }
    if raw.is_empty() {
        return Err(KartError::user("order-empty", "an order needs at least one line")
            .with_hint("`--product PROD_0001 --quantity 2` or `--item PROD_0001:2 --item PROD_0002:1`"));
    }
    let mut lines: Vec<Line> = Vec::new();
    for (product_id, quantity) in raw {
        if product_id.is_empty() {
            return Err(KartError::user("bad-item", "a product id is empty"));
        }
        if quantity < 1 {
            return Err(KartError::user("bad-quantity", format!("{product_id}: quantity {quantity} must be at least 1")));
        }
        match lines.iter_mut().find(|line| line.product_id == product_id) {
            Some(line) => line.quantity += quantity,
            None => lines.push(Line { product_id, quantity }),
        }
    }
    if let Some(line) = lines.iter().find(|line| line.quantity > MAX_COUNT) {
        return Err(KartError::user("bad-quantity", format!("{}: quantity {} is too large", line.product_id, line.quantity)));
    }
    Ok(lines)
}

/// `PRODUCT:QTY`; the product id may itself contain ':' (the last one splits).
fn parse_item(item: &str) -> Result<(String, i64)> {
    let bad = || {
        KartError::user("bad-item", format!("--item {item:?} is not PRODUCT:QUANTITY")).with_hint("e.g. `--item PROD_0001:2`")
    };
    let (product, quantity) = item.rsplit_once(':').ok_or_else(bad)?;
    let quantity: i64 = quantity.trim().parse().map_err(|_| bad())?;
    Ok((product.trim().to_string(), quantity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn repeated_products_merge_into_one_line_in_first_seen_order() {
        let lines = parse_lines(None, None, &items(&["PROD_0002:1", "PROD_0001:2", "PROD_0002:3"])).unwrap();
        assert_eq!(
            lines,
            vec![Line { product_id: "PROD_0002".into(), quantity: 4 }, Line { product_id: "PROD_0001".into(), quantity: 2 }]
        );
        let single = parse_lines(Some("PROD_0001"), None, &[]).unwrap();
        assert_eq!(single, vec![Line { product_id: "PROD_0001".into(), quantity: 1 }]);
    }

    #[test]
    fn non_positive_quantities_and_malformed_items_are_refused() {
        assert_eq!(parse_lines(Some("P"), Some(0), &[]).unwrap_err().code, "bad-quantity");
        assert_eq!(parse_lines(None, None, &items(&["P:-1"])).unwrap_err().code, "bad-quantity");
        assert_eq!(parse_lines(None, None, &items(&["P"])).unwrap_err().code, "bad-item");
        assert_eq!(parse_lines(None, None, &items(&["P:x"])).unwrap_err().code, "bad-item");
        assert_eq!(parse_lines(None, None, &items(&[":2"])).unwrap_err().code, "bad-item");
        assert_eq!(parse_lines(None, None, &[]).unwrap_err().code, "order-empty");
        assert_eq!(parse_lines(None, None, &items(&["P:2147483647", "P:1"])).unwrap_err().code, "bad-quantity");
    }

    proptest! {
        /// Command-line items are outside input: an error or lines, never a
        /// panic, and every line accepted is positive.
        #[test]
        fn item_parsing_never_panics(list in prop::collection::vec(".{0,20}", 0..5)) {
            if let Ok(lines) = parse_lines(None, None, &list) {
                prop_assert!(lines.iter().all(|l| l.quantity >= 1 && !l.product_id.is_empty()));
            }
        }
    }
}
