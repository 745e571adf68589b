//! Orders placed like the workshop's checkout (workshop spec §4, design §7):
//! one database transaction writes `orders`, `order_items` and, on the direct
//! path, one outbox row per line; the outbox rows are published to
//! `order-events` only after the commit and marked sent once the broker has
//! them. An order that was not committed is never published; a committed one
//! whose events could not be published stays in the outbox until the next
//! `order place` or `order flush` publishes it.

pub mod lines;
pub mod outcomes;

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::Client;

use crate::db::{query_error, PgSettings};
use crate::exit::{KartError, Result};
use crate::inventory::model::OrderLine;
use crate::kafka::producer::{publish, OutRecord};
use crate::kafka::KafkaSettings;
use crate::printer::Printer;
use crate::supervise::now_ms;

pub use self::lines::{parse_lines, Line};

pub const ORDER_EVENTS: &str = "order-events";

/// The outbox: kart's own table, beside the workshop's six and outside the
/// `workshop_cdc` publication, created on first use.
const OUTBOX_DDL: &str = "CREATE TABLE IF NOT EXISTS kart_order_outbox (
    id         BIGSERIAL PRIMARY KEY,
    order_id   VARCHAR(50) NOT NULL,
    product_id VARCHAR(50) NOT NULL,
    payload    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at    TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS kart_order_outbox_unsent ON kart_order_outbox (id) WHERE sent_at IS NULL;";

/// The workshop's checkout constants (workshop spec §4.3).
const SHIPPING: &str = "5.99";
const TAX_RATE: &str = "0.08";
const PAYMENT_METHOD: &str = "credit_card";
const STATUS: &str = "CONFIRMED";

/// One line of a placed order, as written.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlacedLine {
    pub product_id: String,
    pub quantity: i64,
    /// `NUMERIC(10,2)` as text, exactly as stored.
    pub unit_price: String,
    pub line_total: String,
}

/// A committed order.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Placed {
    pub order_id: String,
    pub customer_id: String,
    pub subtotal: String,
    pub tax: String,
    pub shipping: String,
    pub total: String,
    pub lines: Vec<PlacedLine>,
    /// Epoch ms; the `timestamp` of the order's events.
    pub placed_at: i64,
    /// Direct path: events go through the outbox; `--cdc`: none.
    pub direct: bool,
}

/// What publishing the outbox achieved.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Flushed {
    /// Order lines published now (this order's and any left from before).
    pub published: usize,
    /// Orders whose lines were published now.
    pub orders: Vec<String>,
    /// Lines still unpublished after this attempt.
    pub pending: usize,
}

pub async fn ensure_outbox(client: &Client) -> Result<()> {
    client.batch_execute(OUTBOX_DDL).await.map_err(|e| query_error("creating the outbox table", e))
}

/// The order statement: see [`place`].
const PLACE_SQL: &str = "WITH lines AS (SELECT * FROM UNNEST($2::text[], $3::int[]) AS l(product_id, quantity)),
                  priced AS (SELECT l.product_id, l.quantity, p.price FROM lines l JOIN products p USING (product_id)),
                  ok AS (SELECT count(*) = cardinality($2::text[]) AS all_known FROM priced),
                  sums AS (SELECT sum(price * quantity) AS subtotal FROM priced),
                  ins_order AS (
                      INSERT INTO orders (order_id, customer_id, order_date, status, subtotal, tax, shipping, total, payment_method)
                      SELECT $1, $4, now(), $5, subtotal, round(subtotal * $6::text::numeric, 2), $7::text::numeric,
                             subtotal + round(subtotal * $6::text::numeric, 2) + $7::text::numeric, $8
                      FROM sums, ok WHERE ok.all_known
                      RETURNING subtotal::text, tax::text, shipping::text, total::text),
                  ins_items AS (
                      INSERT INTO order_items (order_id, product_id, quantity, unit_price, discount, line_total)
                      SELECT $1, product_id, quantity, price, 0, price * quantity FROM priced, ok WHERE ok.all_known),
                  ins_outbox AS (
                      INSERT INTO kart_order_outbox (order_id, product_id, payload)
                      SELECT $1, o.product_id, o.payload FROM UNNEST($2::text[], $9::text[]) AS o(product_id, payload), ok
                      WHERE ok.all_known AND $10)
             SELECT ok.all_known,
                    (SELECT coalesce(json_agg(json_build_array(product_id, price::text)), '[]'::json)::text FROM priced),
                    ins_order.subtotal, ins_order.tax, ins_order.shipping, ins_order.total
             FROM ok LEFT JOIN ins_order ON true";

/// A connection ready to place orders: the outbox exists and the order
/// statement is prepared once (planning it on every call costs a round trip
/// and the planner's time).
pub struct OrderWriter {
    pub client: Client,
    statement: tokio_postgres::Statement,
}

impl OrderWriter {
    pub async fn connect(pg: &PgSettings) -> Result<OrderWriter> {
        let client = connect(pg).await?;
        let statement = client.prepare(PLACE_SQL).await.map_err(|e| query_error("preparing the order statement", e))?;
        Ok(OrderWriter { client, statement })
    }

    pub async fn place(&self, lines: &[Line], customer: &str, direct: bool) -> Result<Placed> {
        place(&self.client, &self.statement, lines, customer, direct).await
    }
}

/// Places one order: `orders`, `order_items` and (direct path) the outbox
/// rows in one statement, so one round trip and atomic without an explicit
/// transaction. Unknown products are refused and nothing is written.
async fn place(client: &Client, statement: &tokio_postgres::Statement, lines: &[Line], customer: &str, direct: bool) -> Result<Placed> {
    let ids: Vec<&str> = lines.iter().map(|l| l.product_id.as_str()).collect();
    let quantities: Vec<i32> = lines.iter().map(|l| l.quantity as i32).collect();
    let order_id = uuid::Uuid::new_v4().to_string();
    let placed_at = now_ms();
    let payloads: Vec<String> = lines
        .iter()
        .map(|line| {
            let event = OrderLine { quantity: line.quantity, product_id: line.product_id.clone(), order_id: order_id.clone(), timestamp: placed_at };
            serde_json::to_string(&event).expect("plain struct")
        })
        .collect();
    // Amounts are computed by Postgres in NUMERIC, as the workshop's API
    // ends up storing them (doubles rounded to 2 decimals by the column).
    // Every insert is conditional on all products being known.
    let row = client
        .query_one(
            statement,
            &[&order_id, &ids, &quantities, &customer, &STATUS, &TAX_RATE, &SHIPPING, &PAYMENT_METHOD, &payloads, &direct],
        )
        .await
        .map_err(|e| query_error("writing the order", e))?;
    let prices: Vec<(String, String)> = serde_json::from_str(&row.get::<_, String>(1)).unwrap_or_default();
    let prices: HashMap<String, String> = prices.into_iter().collect();
    if !row.get::<_, bool>(0) {
        let unknown: Vec<&str> = ids.iter().copied().filter(|id| !prices.contains_key(*id)).collect();
        return Err(KartError::user("unknown-product", format!("unknown product {}: not in the database's products table", unknown.join(", ")))
            .with_hint("`kart products list` shows the catalog; `kart db init` seeds it"));
    }
    let placed_lines: Vec<PlacedLine> = lines
        .iter()
        .map(|line| {
            let unit_price = prices.get(&line.product_id).cloned().unwrap_or_default();
            let line_total = multiply(&unit_price, line.quantity);
            PlacedLine { product_id: line.product_id.clone(), quantity: line.quantity, unit_price, line_total }
        })
        .collect();
    Ok(Placed {
        order_id,
        customer_id: customer.to_string(),
        subtotal: row.get(2),
        tax: row.get(3),
        shipping: row.get(4),
        total: row.get(5),
        lines: placed_lines,
        placed_at,
        direct,
    })
}

/// `price × quantity` on a decimal string, for display (the database holds
/// the authoritative `line_total`).
fn multiply(price: &str, quantity: i64) -> String {
    let (whole, frac) = price.split_once('.').unwrap_or((price, "0"));
    let cents = whole.parse::<i64>().unwrap_or(0) * 100 + format!("{frac:0<2}")[..2].parse::<i64>().unwrap_or(0);
    let total = cents * quantity;
    format!("{}.{:02}", total / 100, total % 100)
}

/// Publishes every unsent outbox row (oldest first), then marks what the
/// broker acknowledged as sent, in one transaction that holds the rows: two
/// concurrent flushes never publish the same row twice. A crash between the
/// acknowledgement and the commit publishes a row again later, which the
/// inventory job's de-duplication absorbs.
pub async fn flush_outbox(client: &mut Client, kafka: &KafkaSettings, printer: &Printer) -> Result<Flushed> {
    let tx = client.transaction().await.map_err(|e| query_error("starting the outbox transaction", e))?;
    let rows = tx
        .query(
            "SELECT id, order_id, product_id, payload FROM kart_order_outbox WHERE sent_at IS NULL ORDER BY id FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await
        .map_err(|e| query_error("reading the outbox", e))?;
    if rows.is_empty() {
        return Ok(Flushed::default());
    }
    let records: Vec<OutRecord> = rows
        .iter()
        .map(|row| OutRecord::keyed(row.get::<_, String>(2), row.get::<_, String>(3).into_bytes()))
        .collect();
    let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let mut orders: Vec<String> = rows.iter().map(|row| row.get::<_, String>(1)).collect();
    orders.dedup();
    // All or nothing: `publish` fails unless every record was acknowledged.
    publish(kafka, printer, ORDER_EVENTS, &records).await?;
    tx.execute("UPDATE kart_order_outbox SET sent_at = now() WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(|e| query_error("marking the outbox rows sent", e))?;
    tx.commit().await.map_err(|e| query_error("committing the outbox", e))?;
    Ok(Flushed { published: ids.len(), orders, pending: 0 })
}

/// How many outbox rows are unsent.
pub async fn pending(client: &Client) -> Result<i64> {
    let row = client
        .query_one("SELECT count(*) FROM kart_order_outbox WHERE sent_at IS NULL", &[])
        .await
        .map_err(|e| query_error("counting the outbox", e))?;
    Ok(row.get(0))
}

/// Connects and makes sure the outbox exists.
pub async fn connect(pg: &PgSettings) -> Result<Client> {
    let client = pg.connect().await?;
    ensure_outbox(&client).await?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_totals_multiply_decimal_prices_exactly() {
        assert_eq!(multiply("1899.99", 3), "5699.97");
        assert_eq!(multiply("0.10", 7), "0.70");
        assert_eq!(multiply("5", 2), "10.00");
    }
}
