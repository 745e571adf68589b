//! The state behind `kart watch`, and how it is drawn: pure, no Kafka and no
//! terminal, so that a test can feed it records and read the frame.
//!
//! Each product's row combines the three topics of the inventory flow:
//! `products` (name, and the absolute stock and price a catalog or update
//! sets), `inventory-events` (stock and price after every change, with the
//! event's type and time) and `inventory-alerts` (the latest alert).
//!
//! The topics are read by separate consumers, so records of different topics
//! arrive in no particular order. Record timestamps decide instead: stock and
//! price come from the newest record that carries them (at the same
//! millisecond an inventory event wins, as in `products list`), and an alert
//! is shown until a later event raises the stock.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::inventory::parse::parse_products;
use crate::kafka::reader::Record;
use crate::kafka::tail::time_of_day as tail_time_of_day;
use crate::printer::Tone;

pub const PRODUCTS_TOPIC: &str = "products";
pub const EVENTS_TOPIC: &str = "inventory-events";
pub const ALERTS_TOPIC: &str = "inventory-alerts";

/// How long a changed row stays highlighted.
const FRESH_MS: i64 = 5_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub alert_type: String,
    pub severity: String,
    pub message: String,
    /// The alert's own `timestamp` (when the job built it).
    pub at: i64,
    /// The record's timestamp: what orders it against events and products,
    /// which are stamped by the same clock.
    record_at: i64,
}

/// One product as the three topics describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub product_id: String,
    pub name: String,
    pub inventory: Option<i64>,
    pub price: Option<f64>,
    /// The stock before the latest inventory event, to show the change.
    pub previous_inventory: Option<i64>,
    pub last_event: Option<String>,
    pub last_event_at: Option<i64>,
    pub alert: Option<Alert>,
    /// When stock and price were last set, and whether by an event (which
    /// wins a tie with a product record).
    stock_at: i64,
    stock_from_event: bool,
    /// When the stock last went up: older alerts no longer apply.
    raised_at: i64,
    /// When the row last changed (record time), for sorting and highlighting.
    pub changed_at: i64,
    /// Arrival order of the last change: breaks ties between rows changed at
    /// the same millisecond, newest first.
    seq: u64,
}

impl Row {
    fn new(product_id: &str) -> Self {
        Row {
            product_id: product_id.to_string(),
            name: String::new(),
            inventory: None,
            price: None,
            previous_inventory: None,
            last_event: None,
            last_event_at: None,
            alert: None,
            stock_at: i64::MIN,
            stock_from_event: false,
            raised_at: i64::MIN,
            changed_at: i64::MIN,
            seq: 0,
        }
    }

    /// The alert, unless a later event raised the stock since.
    pub fn current_alert(&self) -> Option<&Alert> {
        self.alert
            .as_ref()
            .filter(|a| a.record_at >= self.raised_at)
    }

    /// The row as one JSON object (`watch -o json`).
    pub fn to_json(&self) -> Value {
        json!({
            "schemaVersion": 1,
            "productId": self.product_id,
            "name": self.name,
            "inventory": self.inventory,
            "price": self.price,
            "lastEvent": self.last_event,
            "lastEventAt": self.last_event_at,
            "alert": self.current_alert().map(|a| json!({
                "alertType": a.alert_type,
                "severity": a.severity,
                "message": a.message,
                "timestamp": a.at,
            })),
        })
    }

    /// The row as one line of text (`watch` without a terminal).
    pub fn to_line(&self) -> String {
        let mut line = format!("{} {}", time_of_day(self.changed_at), self.product_id);
        if !self.name.is_empty() {
            line.push_str(&format!(" {:?}", self.name));
        }
        line.push_str(&format!(" stock {}", stock_text(self)));
        line.push_str(&format!(
            " price {}",
            self.price.map(money).unwrap_or_else(|| "-".into())
        ));
        if let Some(event) = &self.last_event {
            line.push_str(&format!(" {event}"));
        }
        if let Some(alert) = self.current_alert() {
            line.push_str(&format!(" [{} {}]", alert.severity, alert.alert_type));
        }
        printable(&line)
    }
}

/// The fields of an `inventory-events` record the board needs, read
/// leniently (the workshop's job and kart's write the same fields).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventFields {
    product_id: String,
    #[serde(default)]
    product_name: Option<String>,
    event_type: String,
    #[serde(default)]
    previous_inventory: Option<i64>,
    #[serde(default)]
    current_inventory: Option<i64>,
    #[serde(default)]
    current_price: Option<f64>,
    #[serde(default)]
    timestamp: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertFields {
    product_id: String,
    alert_type: String,
    #[serde(default)]
    message: String,
    severity: String,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// Every product's row.
#[derive(Debug, Default)]
pub struct Board {
    rows: BTreeMap<String, Row>,
    seq: u64,
    /// The arrival count when the history was read: rows changed after it
    /// are live changes, shown first.
    baseline: u64,
    /// Records that were neither products, events nor alerts.
    pub skipped: u64,
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the end of the history (every topic read to its end once):
    /// from now on a changed row moves to the top.
    pub fn mark_caught_up(&mut self) {
        self.baseline = self.seq;
    }

    pub fn row(&self, product_id: &str) -> Option<&Row> {
        self.rows.get(product_id)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows sorted by id.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.values()
    }

    /// Applies one record; returns the ids of the rows it changed.
    pub fn apply(&mut self, record: &Record) -> Vec<String> {
        let Some(value) = record.value.as_deref() else {
            return Vec::new();
        };
        let record_time = record.timestamp.unwrap_or(0);
        self.seq += 1;
        let seq = self.seq;
        match record.topic.as_str() {
            PRODUCTS_TOPIC => {
                let Ok(products) = parse_products(value) else {
                    self.skipped += 1;
                    return Vec::new();
                };
                let mut changed = Vec::new();
                for product in products {
                    let row = self
                        .rows
                        .entry(product.product_id.clone())
                        .or_insert_with(|| Row::new(&product.product_id));
                    let before = row.clone();
                    row.name = product.name.clone();
                    let newer = record_time > row.stock_at
                        || (record_time == row.stock_at && !row.stock_from_event);
                    if newer {
                        if product.inventory > row.inventory.unwrap_or(i64::MIN) {
                            row.raised_at = row.raised_at.max(record_time);
                        }
                        row.inventory = Some(product.inventory);
                        row.price = Some(product.price);
                        row.stock_at = record_time;
                        row.stock_from_event = false;
                    }
                    if *row != before {
                        row.changed_at = row.changed_at.max(record_time);
                        row.seq = seq;
                        changed.push(product.product_id);
                    }
                }
                changed
            }
            EVENTS_TOPIC => {
                let Ok(event) = serde_json::from_slice::<EventFields>(value) else {
                    self.skipped += 1;
                    return Vec::new();
                };
                if event.product_id.trim().is_empty() {
                    self.skipped += 1;
                    return Vec::new();
                }
                // Ordered by the record's timestamp, like product records:
                // the job stamps both from one clock, the product record
                // first, while the event's own `timestamp` is taken a little
                // earlier, when the event is built; that one is what "when"
                // shows.
                let shown_at = event.timestamp.filter(|t| *t > 0).unwrap_or(record_time);
                let at = record_time;
                let row = self
                    .rows
                    .entry(event.product_id.clone())
                    .or_insert_with(|| Row::new(&event.product_id));
                let before = row.clone();
                if row.name.is_empty() {
                    row.name = event.product_name.unwrap_or_default();
                }
                if at >= row.stock_at {
                    // A null leaves the value alone: the workshop's stale
                    // events carry a null price that means "unchanged".
                    row.previous_inventory = event.previous_inventory.or(row.inventory);
                    row.inventory = event.current_inventory.or(row.inventory);
                    row.price = event.current_price.or(row.price);
                    row.stock_at = at;
                    row.stock_from_event = true;
                    if matches!(
                        event.event_type.as_str(),
                        "INVENTORY_INCREASED" | "BACK_IN_STOCK"
                    ) {
                        row.raised_at = row.raised_at.max(at);
                    }
                }
                if row.last_event_at.is_none_or(|last| shown_at >= last) {
                    row.last_event = Some(event.event_type);
                    row.last_event_at = Some(shown_at);
                }
                if *row != before {
                    row.changed_at = row.changed_at.max(record_time);
                    row.seq = seq;
                    return vec![event.product_id];
                }
                Vec::new()
            }
            ALERTS_TOPIC => {
                let Ok(alert) = serde_json::from_slice::<AlertFields>(value) else {
                    self.skipped += 1;
                    return Vec::new();
                };
                let at = alert.timestamp.filter(|t| *t > 0).unwrap_or(record_time);
                let row = self
                    .rows
                    .entry(alert.product_id.clone())
                    .or_insert_with(|| Row::new(&alert.product_id));
                if row
                    .alert
                    .as_ref()
                    .is_some_and(|a| a.record_at > record_time)
                {
                    return Vec::new();
                }
                row.alert = Some(Alert {
                    alert_type: alert.alert_type,
                    severity: alert.severity,
                    message: alert.message,
                    at,
                    record_at: record_time,
                });
                row.changed_at = row.changed_at.max(record_time);
                row.seq = seq;
                vec![alert.product_id]
            }
            _ => {
                self.skipped += 1;
                Vec::new()
            }
        }
    }

    /// Rows in display order: rows changed since the history was read
    /// first, the latest change on top, so a change is seen where the eye
    /// is; then the rest by id, a stable order to look things up in.
    pub fn ordered(&self) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self.rows.values().collect();
        let live = |row: &Row| row.seq > self.baseline;
        rows.sort_by(|a, b| {
            live(b).cmp(&live(a)).then_with(|| {
                if live(a) {
                    b.seq.cmp(&a.seq)
                } else {
                    a.product_id.cmp(&b.product_id)
                }
            })
        });
        rows
    }

    /// Draws the board as `height` lines at most, each at most `width`
    /// columns wide (colour codes excluded). `now_ms` decides "ago" and
    /// which rows are highlighted as fresh; `paint` applies colour (identity
    /// without a terminal).
    pub fn render(
        &self,
        width: usize,
        height: usize,
        now_ms: i64,
        paint: &dyn Fn(&str, Tone) -> String,
    ) -> Vec<String> {
        let width = width.max(20);
        let alerts = self
            .rows
            .values()
            .filter(|r| r.current_alert().is_some())
            .count();
        let mut lines = Vec::new();
        let title = format!(
            "kart watch · {} products · {} alert{} · {} · q quits",
            self.rows.len(),
            alerts,
            if alerts == 1 { "" } else { "s" },
            time_of_day(now_ms),
        );
        lines.push(paint(&fit(&title, width), Tone::Strong));
        if self.rows.is_empty() {
            lines.push(fit(
                "no products yet: the inventory job publishes them (`kart job deploy inventory`)",
                width,
            ));
            lines.truncate(height.max(1));
            return lines;
        }

        // Fixed columns, then the name takes what is left (at least 8).
        let headers = [
            "PRODUCT",
            "STOCK",
            "PRICE",
            "LAST EVENT",
            "WHEN",
            "ALERT",
            "NAME",
        ];
        let fixed = [9usize, 10, 10, 19, 7, 15];
        let used: usize = fixed.iter().sum::<usize>() + 2 * fixed.len();
        // The name goes last and is left out when there is no room for it.
        let name_width = width.saturating_sub(used);
        let name_width = if name_width >= 8 { name_width } else { 0 };
        let header = columns(&headers.map(String::from), &fixed, name_width);
        lines.push(paint(&fit(&header, width), Tone::Dim));

        let room = height.saturating_sub(lines.len());
        let ordered = self.ordered();
        let shown = if ordered.len() > room {
            room.saturating_sub(1)
        } else {
            ordered.len()
        };
        for row in &ordered[..shown] {
            let fresh = now_ms.saturating_sub(row.changed_at) < FRESH_MS;
            let cells = [
                row.product_id.clone(),
                stock_text(row),
                row.price.map(money).unwrap_or_else(|| "-".into()),
                row.last_event.clone().unwrap_or_else(|| "-".into()),
                row.last_event_at
                    .map(|t| ago(now_ms, t))
                    .unwrap_or_else(|| "-".into()),
                row.current_alert()
                    .map(|a| format!("{} {}", severity_mark(&a.severity), a.alert_type))
                    .unwrap_or_default(),
                row.name.clone(),
            ];
            let line = fit(&columns(&cells, &fixed, name_width), width);
            let tone = match row.current_alert().map(|a| a.severity.as_str()) {
                Some("CRITICAL") => Some(Tone::Bad),
                Some("WARNING") => Some(Tone::Warn),
                _ if fresh => Some(Tone::Strong),
                _ => None,
            };
            let line = match tone {
                Some(tone) => paint(&line, tone),
                None => line,
            };
            lines.push(line);
        }
        if shown < ordered.len() {
            lines.push(paint(
                &fit(
                    &format!(
                        "… {} more (a taller terminal shows them)",
                        ordered.len() - shown
                    ),
                    width,
                ),
                Tone::Dim,
            ));
        }
        lines
    }
}

fn severity_mark(severity: &str) -> &'static str {
    match severity {
        "CRITICAL" => "!!",
        "WARNING" => "!",
        _ => "i",
    }
}

fn stock_text(row: &Row) -> String {
    match (row.inventory, row.previous_inventory) {
        (Some(now), Some(before)) if before != now => format!("{now} ({:+})", now - before),
        (Some(now), _) => now.to_string(),
        (None, _) => "-".into(),
    }
}

fn money(price: f64) -> String {
    format!("{price:.2}")
}

fn time_of_day(ms: i64) -> String {
    if ms == i64::MIN {
        return "-".into();
    }
    // Whole seconds: `HH:MM:SS` of `HH:MM:SS.mmmZ`.
    let text = tail_time_of_day(ms);
    match text.get(8..9) {
        Some(".") => text[..8].to_string(),
        _ => text,
    }
}

fn ago(now_ms: i64, at: i64) -> String {
    let seconds = (now_ms.saturating_sub(at) / 1000).max(0);
    match seconds {
        0..=59 => format!("{seconds}s ago"),
        60..=3599 => format!("{}m ago", seconds / 60),
        3600..=86_399 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

/// Cells padded to their column widths (numbers right-aligned), two spaces
/// apart; the last cell (the name) is cut to `last`.
fn columns(cells: &[String; 7], widths: &[usize; 6], last: usize) -> String {
    let mut line = String::new();
    for (i, width) in widths.iter().enumerate() {
        let cell = cut(&cells[i], *width);
        if i == 1 || i == 2 {
            line.push_str(&format!("{cell:>width$}  "));
        } else {
            line.push_str(&format!("{cell:<width$}  "));
        }
    }
    line.push_str(&cut(&cells[6], last));
    line.trim_end().to_string()
}

/// At most `width` characters, the last one an ellipsis when cut (the
/// board's text is plain: colour is applied to whole lines afterwards).
/// Text from records, made harmless for a terminal: an escape sequence or
/// a newline in a product name must not move the cursor or change the
/// terminal's state (the table is drawn in raw mode).
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

fn cut(text: &str, width: usize) -> String {
    let text = printable(text);
    if text.chars().count() <= width {
        return text;
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('…');
    }
    out
}

fn fit(text: &str, width: usize) -> String {
    cut(text, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_771_550_000_000;

    fn rec(topic: &str, offset: i64, at: i64, value: &str) -> Record {
        Record {
            topic: topic.into(),
            partition: 0,
            offset,
            timestamp: Some(at),
            key: None,
            value: Some(value.as_bytes().to_vec()),
            headers: vec![],
        }
    }

    fn product(id: &str, name: &str, inventory: i64, price: f64) -> String {
        json!({"productId": id, "name": name, "description": "", "price": price, "category": "Electronics",
               "brand": null, "imageUrl": "", "inventory": inventory, "tags": [], "rating": 4.5, "reviewCount": 1})
        .to_string()
    }

    fn event(id: &str, kind: &str, before: i64, after: i64, at: i64) -> String {
        json!({"productId": id, "productName": "x", "eventType": kind, "previousInventory": before,
               "currentInventory": after, "previousPrice": null, "currentPrice": null, "timestamp": at,
               "changeReason": "", "alertLevel": null, "inventoryChange": after - before, "priceChange": 0.0, "critical": false})
        .to_string()
    }

    fn plain(text: &str, _tone: Tone) -> String {
        text.to_string()
    }

    fn board() -> Board {
        let mut board = Board::new();
        board.apply(&rec(
            PRODUCTS_TOPIC,
            0,
            T0,
            &product("PROD_0001", "FutureTech UltraBook Pro 15", 10, 1899.99),
        ));
        board.apply(&rec(
            PRODUCTS_TOPIC,
            1,
            T0,
            &product("PROD_0002", "Mouse", 50, 19.5),
        ));
        board
    }

    #[test]
    fn an_order_shows_the_new_stock_in_its_row_at_the_top() {
        let mut board = board();
        let changed = board.apply(&rec(
            EVENTS_TOPIC,
            0,
            T0 + 1000,
            &event("PROD_0001", "INVENTORY_DECREASED", 10, 8, T0 + 1000),
        ));
        assert_eq!(changed, vec!["PROD_0001".to_string()]);
        let frame = board.render(120, 10, T0 + 3000, &plain);
        assert!(
            frame[0].starts_with("kart watch · 2 products · 0 alerts"),
            "{frame:#?}"
        );
        assert!(frame[1].starts_with("PRODUCT"), "{frame:#?}");
        // The changed product comes first, with its new stock and the change.
        assert!(frame[2].starts_with("PROD_0001"), "{frame:#?}");
        assert!(frame[2].contains("8 (-2)"), "{frame:#?}");
        assert!(
            frame[2].contains("1899.99")
                && frame[2].contains("INVENTORY_DECREASED")
                && frame[2].contains("2s ago"),
            "{frame:#?}"
        );
        assert!(
            frame[3].starts_with("PROD_0002") && frame[3].contains("50"),
            "{frame:#?}"
        );
        assert!(frame.iter().all(|l| console::measure_text_width(l) <= 120));
    }

    #[test]
    fn timestamps_not_arrival_order_decide_the_stock() {
        let mut board = board();
        // The event (later) arrives before an older product record.
        board.apply(&rec(
            EVENTS_TOPIC,
            0,
            T0 + 2000,
            &event("PROD_0001", "INVENTORY_DECREASED", 10, 7, T0 + 2000),
        ));
        board.apply(&rec(
            PRODUCTS_TOPIC,
            2,
            T0 + 1000,
            &product("PROD_0001", "FutureTech UltraBook Pro 15", 10, 1899.99),
        ));
        assert_eq!(board.row("PROD_0001").unwrap().inventory, Some(7));
        // A newer product record (an update) sets the stock again.
        board.apply(&rec(
            PRODUCTS_TOPIC,
            3,
            T0 + 3000,
            &product("PROD_0001", "FutureTech UltraBook Pro 15", 25, 1799.0),
        ));
        let row = board.row("PROD_0001").unwrap();
        assert_eq!((row.inventory, row.price), (Some(25), Some(1799.0)));
    }

    #[test]
    fn alerts_show_until_the_stock_goes_up() {
        let mut board = board();
        let alert = json!({"alertType": "LOW_STOCK", "productId": "PROD_0001", "message": "Low stock: only 3 items remaining", "severity": "WARNING", "timestamp": T0 + 1000});
        board.apply(&rec(
            EVENTS_TOPIC,
            0,
            T0 + 1000,
            &event("PROD_0001", "INVENTORY_DECREASED", 10, 3, T0 + 1000),
        ));
        board.apply(&rec(ALERTS_TOPIC, 0, T0 + 1000, &alert.to_string()));
        let frame = board.render(120, 10, T0 + 1500, &plain);
        assert!(frame[0].contains("1 alert ·"), "{frame:#?}");
        assert!(frame[2].contains("! LOW_STOCK"), "{frame:#?}");
        assert_eq!(
            board.row("PROD_0001").unwrap().to_json()["alert"]["severity"],
            "WARNING"
        );
        board.apply(&rec(
            EVENTS_TOPIC,
            1,
            T0 + 5000,
            &event("PROD_0001", "INVENTORY_INCREASED", 3, 40, T0 + 5000),
        ));
        assert!(board.row("PROD_0001").unwrap().current_alert().is_none());
        assert!(board.row("PROD_0001").unwrap().to_json()["alert"].is_null());
    }

    #[test]
    fn small_terminals_say_how_many_rows_are_hidden() {
        let mut board = Board::new();
        for i in 1..=16 {
            board.apply(&rec(
                PRODUCTS_TOPIC,
                i,
                T0 + i,
                &product(
                    &format!("PROD_{i:04}"),
                    "A product with a long name",
                    20,
                    9.99,
                ),
            ));
        }
        let frame = board.render(60, 8, T0 + 100, &plain);
        assert_eq!(frame.len(), 8);
        assert!(frame[7].starts_with("… 11 more"), "{frame:#?}");
        assert!(
            frame.iter().all(|l| console::measure_text_width(l) <= 60),
            "{frame:#?}"
        );
        // Newest first.
        assert!(frame[2].starts_with("PROD_0016"), "{frame:#?}");
    }

    #[test]
    fn after_the_history_only_live_changes_move_to_the_top() {
        let mut board = Board::new();
        for i in [3, 1, 2] {
            board.apply(&rec(
                PRODUCTS_TOPIC,
                i,
                T0 + i,
                &product(&format!("PROD_{i:04}"), "P", 20, 9.99),
            ));
        }
        board.mark_caught_up();
        let ids = |board: &Board| {
            board
                .ordered()
                .iter()
                .map(|r| r.product_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&board), ["PROD_0001", "PROD_0002", "PROD_0003"]);
        board.apply(&rec(
            EVENTS_TOPIC,
            0,
            T0 + 10,
            &event("PROD_0002", "INVENTORY_DECREASED", 20, 19, T0 + 10),
        ));
        assert_eq!(ids(&board), ["PROD_0002", "PROD_0001", "PROD_0003"]);
    }

    #[test]
    fn other_records_are_counted_not_fatal() {
        let mut board = Board::new();
        assert!(board
            .apply(&rec(EVENTS_TOPIC, 0, T0, "not json"))
            .is_empty());
        assert!(board.apply(&rec(PRODUCTS_TOPIC, 0, T0, "{}")).is_empty());
        assert_eq!(board.skipped, 2);
        let frame = board.render(80, 5, T0, &plain);
        assert!(frame[1].starts_with("no products yet"), "{frame:#?}");
    }

    #[test]
    fn a_change_line_reads_at_a_glance() {
        let mut board = board();
        board.apply(&rec(
            EVENTS_TOPIC,
            0,
            T0 + 1000,
            &event("PROD_0001", "INVENTORY_DECREASED", 10, 8, T0 + 1000),
        ));
        assert_eq!(
            board.row("PROD_0001").unwrap().to_line(),
            r#"01:13:21 PROD_0001 "FutureTech UltraBook Pro 15" stock 8 (-2) price 1899.99 INVENTORY_DECREASED"#
        );
    }

    #[test]
    fn control_characters_from_records_never_reach_the_terminal() {
        let mut board = Board::new();
        board.apply(&rec(PRODUCTS_TOPIC, 0, T0, &product("PROD_\u{1b}[2J", "Clear\u{1b}]0;title\u{7}\nscreen", 3, 1.0)));
        board.apply(&rec(EVENTS_TOPIC, 0, T0 + 1, &event("PROD_\u{1b}[2J", "BAD\r\u{1b}[1A", 3, 2, T0 + 1)));
        let frame = board.render(120, 10, T0 + 2, &plain);
        let line = board.row("PROD_\u{1b}[2J").unwrap().to_line();
        for text in frame.iter().chain(std::iter::once(&line)) {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        assert!(frame.iter().any(|l| l.contains("PROD_\u{fffd}[2J")), "{frame:#?}");
    }
}
