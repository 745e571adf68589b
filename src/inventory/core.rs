//! The inventory processor itself: the workshop's rules (workshop spec
//! §2.6–§2.10) with kart's deliberate differences (design §6), as a pure
//! function of (state, input, now).
//!
//! No clock, no Kafka, no JSON on the hot path: the driver passes `now`,
//! feeds parsed inputs, and turns [`Outputs`] into records. State changes are
//! reported as [`StateChange`]s, which the driver turns into changelog records
//! with [`Processor::changelog_record`]; [`Processor::restore_record`] reads
//! them back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};

use super::dedup::{self, Dedup};
use super::format::{java_fixed1, java_fixed2};
use super::model::{
    AlertEvent, AlertType, Change, EventType, InventoryEvent, OrderLine, OrderOutcome, Outcome,
    Product, Severity,
};

/// What to do with an order line asking for more than is in stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnInsufficient {
    /// kart's default: the line is not applied and says so (design §6).
    Reject,
    /// The workshop's behaviour: deduct down to 0 and carry on.
    Clamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// Low stock means `0 < stock < low_stock_threshold` (`KART_LOW_STOCK_THRESHOLD`).
    pub low_stock_threshold: i64,
    /// Idle time after which a product gets one STALE_INVENTORY event (`KART_STALE_TIMEOUT`).
    pub stale_timeout_ms: i64,
    pub on_insufficient: OnInsufficient,
    /// How long a decided order line is remembered (`KART_DEDUP_WINDOW`).
    pub dedup_window_ms: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            low_stock_threshold: 10,
            stale_timeout_ms: 3_600_000,
            on_insufficient: OnInsufficient::Reject,
            dedup_window_ms: 24 * 3_600_000,
        }
    }
}

/// One thing the processor reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A product from the bootstrap file or `product-updates`: an absolute
    /// set of the product, inventory and price included.
    Product(Product),
    /// Several products from one message, applied in order.
    Products(Vec<Product>),
    /// An order line; its quantity must be at least 1, which
    /// [`parse_order`](super::parse::parse_order) guarantees.
    Order(OrderLine),
    /// Time passed: fire due stale timers and forget expired order lines.
    Tick,
}

/// A piece of state that changed, for the compacted changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// The product's record (product, last update, stale deadline) changed;
    /// its changelog key is the product id.
    Product(String),
    /// An order line was decided and is remembered until `expires_at`.
    DedupAdded { hash: u64, expires_at: i64 },
    /// A remembered line expired: its changelog record gets a tombstone.
    DedupExpired { hash: u64 },
}

/// Everything one [`Processor::apply`] produced, in emission order per
/// stream. Reuse one value across calls ([`Outputs::clear`]) so the vectors
/// keep their capacity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    /// For `products`: every product input, as received.
    pub products: Vec<Product>,
    /// For `inventory-events` and, wrapped, `websocket_fanout`.
    pub events: Vec<InventoryEvent>,
    /// For `inventory-alerts`.
    pub alerts: Vec<AlertEvent>,
    /// For `kart-order-outcomes`: one per order line.
    pub outcomes: Vec<OrderOutcome>,
    /// For `inventory-dlq`: order lines for products the processor does not
    /// know, with the reason.
    pub unknown_product_orders: Vec<(OrderLine, String)>,
    /// For `kart-inventory-state`.
    pub changes: Vec<StateChange>,
}

impl Outputs {
    pub fn clear(&mut self) {
        self.products.clear();
        self.events.clear();
        self.alerts.clear();
        self.outcomes.clear();
        self.unknown_product_orders.clear();
        self.changes.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
            && self.events.is_empty()
            && self.alerts.is_empty()
            && self.outcomes.is_empty()
            && self.unknown_product_orders.is_empty()
            && self.changes.is_empty()
    }
}

/// Per-product state: the workshop's three keyed states (`last-product`,
/// `last-update-time`, `timer`) in one record.
#[derive(Debug, Clone, PartialEq)]
struct ProductState {
    product: Product,
    last_update: i64,
    /// When the stale timer fires; `None` once it fired for this idle period.
    stale_deadline: Option<i64>,
    /// The deadline of this product's live entry in `Processor::timers`;
    /// entries with any other deadline are leftovers and skipped.
    queued_deadline: Option<i64>,
}

/// The changelog value of a product (key = product id).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProductSnapshotRef<'a> {
    product: &'a Product,
    last_update: i64,
    stale_deadline: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProductSnapshot {
    product: Product,
    last_update: i64,
    stale_deadline: Option<i64>,
}

/// The changelog value of a remembered order line (key = `dedup:<hex hash>`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DedupRecord {
    expires_at: i64,
}

/// The embedded inventory processor.
#[derive(Debug, Clone)]
pub struct Processor {
    config: Config,
    /// Products live in slots so timers can refer to them by a `usize`
    /// instead of cloning ids; `index` maps ids to slots.
    slots: Vec<Option<ProductState>>,
    index: HashMap<String, usize, BuildHasherDefault<dedup::StableHasher>>,
    free_slots: Vec<usize>,
    /// Stale timers as a min-heap of `(deadline, slot)` with lazy updates:
    /// re-arming a timer to a later deadline (every order does) touches only
    /// the product; the heap entry is moved when it comes due. So an order
    /// costs O(1) here and a tick with nothing due costs O(1).
    timers: BinaryHeap<Reverse<(i64, usize)>>,
    dedup: Dedup,
}

impl Processor {
    pub fn new(config: Config) -> Self {
        Processor {
            config,
            slots: Vec::new(),
            index: HashMap::default(),
            free_slots: Vec::new(),
            timers: BinaryHeap::new(),
            dedup: Dedup::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies one input at processing time `now_ms` (epoch ms), appending
    /// what it produced to `out`. Every timestamp in the outputs is `now_ms`.
    pub fn apply(&mut self, input: Input, now_ms: i64, out: &mut Outputs) {
        // Forget expired lines on every input, not only on ticks, so whether
        // a line counts as a duplicate never depends on how often the driver
        // ticks. With nothing due this is one comparison.
        self.expire_dedup(now_ms, out);
        match input {
            Input::Product(product) => self.apply_product(product, now_ms, out),
            Input::Products(products) => {
                for product in products {
                    self.apply_product(product, now_ms, out);
                }
            }
            Input::Order(line) => self.apply_order(line, now_ms, out),
            Input::Tick => self.fire_due_timers(now_ms, out),
        }
    }

    /// The earliest time at which a [`Input::Tick`] may have work to do (a
    /// lower bound: a timer may turn out to have been re-armed later).
    pub fn next_deadline(&self) -> Option<i64> {
        let timer = self.timers.peek().map(|Reverse((deadline, _))| *deadline);
        match (timer, self.dedup.next_expiry()) {
            (Some(timer), Some(expiry)) => Some(timer.min(expiry)),
            (timer, expiry) => timer.or(expiry),
        }
    }

    pub fn product(&self, product_id: &str) -> Option<&Product> {
        self.state(product_id).map(|state| &state.product)
    }

    /// `(last_update, stale_deadline)` of a product.
    pub fn timing(&self, product_id: &str) -> Option<(i64, Option<i64>)> {
        self.state(product_id)
            .map(|state| (state.last_update, state.stale_deadline))
    }

    pub fn products(&self) -> impl Iterator<Item = &Product> + '_ {
        self.slots.iter().flatten().map(|state| &state.product)
    }

    pub fn product_count(&self) -> usize {
        self.index.len()
    }

    pub fn dedup_len(&self) -> usize {
        self.dedup.len()
    }

    pub fn dedup_memory_bytes(&self) -> usize {
        self.dedup.memory_bytes()
    }

    /// Whether the line `(order_id, product_id)` is remembered as decided.
    pub fn is_remembered(&self, order_id: &str, product_id: &str) -> bool {
        self.dedup.contains(dedup::line_hash(order_id, product_id))
    }

    fn state(&self, product_id: &str) -> Option<&ProductState> {
        let slot = *self.index.get(product_id)?;
        self.slots.get(slot)?.as_ref()
    }

    // ----- products ---------------------------------------------------------

    fn apply_product(&mut self, product: Product, now: i64, out: &mut Outputs) {
        out.products.push(product.clone());
        let deadline = now.saturating_add(self.config.stale_timeout_ms);
        let product_id = product.product_id.clone();
        match self.index.get(&product.product_id).copied() {
            None => {
                self.announce_new_product(&product, now, out);
                let slot = self.allocate_slot(ProductState {
                    product,
                    last_update: now,
                    stale_deadline: None,
                    queued_deadline: None,
                });
                self.index.insert(product_id.clone(), slot);
                self.arm_timer(slot, Some(deadline));
            }
            Some(slot) => {
                if let Some(state) = self.slots.get_mut(slot).and_then(Option::as_mut) {
                    compare_product(&self.config, &state.product, &product, now, out);
                    state.product = product;
                    state.last_update = now;
                }
                self.arm_timer(slot, Some(deadline));
            }
        }
        out.changes.push(StateChange::Product(product_id));
    }

    fn announce_new_product(&self, product: &Product, now: i64, out: &mut Outputs) {
        out.events.push(InventoryEvent::new(
            product,
            EventType::ProductAdded,
            Change::new(0, product.inventory),
            Change::new(0.0, product.price),
            now,
            "New product added to catalog".to_owned(),
        ));
        if product.inventory == 0 {
            out.alerts.push(out_of_stock_alert(&product.product_id, now));
        } else if let Some(alert) = low_stock_alert(&self.config, &product.product_id, product.inventory, now) {
            out.alerts.push(alert);
        }
    }

    fn allocate_slot(&mut self, state: ProductState) -> usize {
        match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(state);
                slot
            }
            None => {
                self.slots.push(Some(state));
                self.slots.len() - 1
            }
        }
    }

    // ----- orders -----------------------------------------------------------

    fn apply_order(&mut self, line: OrderLine, now: i64, out: &mut Outputs) {
        let Some(slot) = self.index.get(&line.product_id).copied() else {
            // Unknown product: nothing to deduct from, and nothing is
            // remembered, so the line can still apply if it is replayed
            // after the product arrives.
            let reason = format!("unknown product {}", line.product_id);
            out.outcomes.push(outcome(line.clone(), Outcome::Dlq, None, Some(reason.clone()), now));
            out.unknown_product_orders.push((line, reason));
            return;
        };
        let hash = dedup::line_hash(&line.order_id, &line.product_id);
        if self.dedup.contains(hash) {
            out.outcomes.push(outcome(
                line,
                Outcome::Duplicate,
                None,
                Some("order line already processed".to_owned()),
                now,
            ));
            return;
        }
        // A decided line, rejected or applied, is remembered: a copy of it
        // (the CDC path beside the direct path, a CDC replay after a crash)
        // must not get a second, different decision — e.g. a line rejected
        // at stock 2 must not silently deduct after a restock, when the
        // customer was already told it failed. A user who retries places a
        // new order with a new orderId.
        let expires_at = now.saturating_add(self.config.dedup_window_ms);
        self.dedup.insert(hash, expires_at);

        let Some(state) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return; // index and slots always agree; nothing sensible to do otherwise
        };
        let stock = state.product.inventory;
        let price = state.product.price;
        if line.quantity > stock && self.config.on_insufficient == OnInsufficient::Reject {
            // State unchanged, timer not re-armed: nothing happened to the product.
            let reason = format!(
                "Insufficient inventory for order {}: available {stock}, requested {}",
                line.order_id, line.quantity
            );
            out.events.push(InventoryEvent::new(
                &state.product,
                EventType::OrderRejected,
                Change::new(stock, stock),
                Change::new(price, price),
                now,
                reason.clone(),
            ));
            out.alerts.push(AlertEvent {
                alert_type: AlertType::InsufficientStock,
                product_id: state.product.product_id.clone(),
                message: format!(
                    "Order {} rejected: requested {}, available {stock}",
                    line.order_id, line.quantity
                ),
                severity: Severity::Warning,
                timestamp: now,
            });
            out.outcomes.push(outcome(line, Outcome::Rejected, Some((stock, stock)), Some(reason), now));
            out.changes.push(StateChange::DedupAdded { hash, expires_at });
            return;
        }

        // Clamp mode deducts what is there, as the workshop does; the reason
        // still shows the requested quantity (workshop spec §2.7).
        let remaining = stock.saturating_sub(line.quantity).max(0);
        state.product.inventory = remaining;
        state.last_update = now;
        out.events.push(InventoryEvent::new(
            &state.product,
            EventType::InventoryDecreased,
            Change::new(stock, remaining),
            Change::new(price, price),
            now,
            format!("Deducted {} for order {}", line.quantity, line.order_id),
        ));
        if remaining == 0 {
            out.alerts.push(out_of_stock_alert(&state.product.product_id, now));
        } else if let Some(alert) = low_stock_alert(&self.config, &state.product.product_id, remaining, now) {
            out.alerts.push(alert);
        }
        out.changes.push(StateChange::Product(state.product.product_id.clone()));
        out.changes.push(StateChange::DedupAdded { hash, expires_at });
        out.outcomes.push(outcome(line, Outcome::Applied, Some((stock, remaining)), None, now));
        let deadline = now.saturating_add(self.config.stale_timeout_ms);
        self.arm_timer(slot, Some(deadline));
    }

    fn expire_dedup(&mut self, now: i64, out: &mut Outputs) {
        let changes = &mut out.changes;
        self.dedup
            .expire(now, |hash| changes.push(StateChange::DedupExpired { hash }));
    }

    // ----- stale timers -----------------------------------------------------

    /// Sets a product's stale deadline, queueing a heap entry only when the
    /// product has none due at or before it.
    fn arm_timer(&mut self, slot: usize, deadline: Option<i64>) {
        let Some(state) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        state.stale_deadline = deadline;
        if let Some(deadline) = deadline {
            if state.queued_deadline.is_none_or(|queued| queued > deadline) {
                self.timers.push(Reverse((deadline, slot)));
                state.queued_deadline = Some(deadline);
            }
        }
    }

    fn fire_due_timers(&mut self, now: i64, out: &mut Outputs) {
        let timeout = self.config.stale_timeout_ms;
        while let Some(&Reverse((due, slot))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(state) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if state.queued_deadline != Some(due) {
                continue; // a leftover entry, superseded by an earlier one
            }
            state.queued_deadline = None;
            let Some(deadline) = state.stale_deadline else {
                continue; // already fired for this idle period
            };
            if deadline > now {
                // Re-armed since this entry was queued: queue the real deadline.
                self.timers.push(Reverse((deadline, slot)));
                state.queued_deadline = Some(deadline);
                continue;
            }
            let idle = now.saturating_sub(state.last_update);
            if idle >= timeout {
                out.events.push(InventoryEvent::new(
                    &state.product,
                    EventType::StaleInventory,
                    Change::only_current(state.product.inventory),
                    // kart sends the price; the workshop's null made its API
                    // show the product at 0.00 (workshop spec §7.2).
                    Change::only_current(state.product.price),
                    now,
                    format!("No updates for {} hours", java_fixed1(idle as f64 / 3_600_000.0)),
                ));
                // One event per idle period: not re-armed until the next update.
                state.stale_deadline = None;
            } else {
                // The deadline was set under a shorter timeout (configuration
                // changed across a restart): wait for the full current one.
                let deadline = state.last_update.saturating_add(timeout);
                state.stale_deadline = Some(deadline);
                state.queued_deadline = Some(deadline);
                self.timers.push(Reverse((deadline, slot)));
            }
            out.changes.push(StateChange::Product(state.product.product_id.clone()));
        }
    }

    // ----- changelog --------------------------------------------------------

    /// The changelog value of a product: JSON
    /// `{"product":{…},"lastUpdate":…,"staleDeadline":…|null}`.
    pub fn snapshot_product(&self, product_id: &str) -> Option<Vec<u8>> {
        let state = self.state(product_id)?;
        let snapshot = ProductSnapshotRef {
            product: &state.product,
            last_update: state.last_update,
            stale_deadline: state.stale_deadline,
        };
        Some(serde_json::to_vec(&snapshot).expect("plain structs with string keys always serialise"))
    }

    /// The changelog record `(key, value)` for a change; `None` is a
    /// tombstone. A product's value is its state *now*, so a driver that
    /// batches changes writes each key's latest state once.
    pub fn changelog_record(&self, change: &StateChange) -> (String, Option<Vec<u8>>) {
        match change {
            StateChange::Product(product_id) => (product_id.clone(), self.snapshot_product(product_id)),
            StateChange::DedupAdded { hash, expires_at } => {
                let record = DedupRecord { expires_at: *expires_at };
                let value = serde_json::to_vec(&record).expect("a struct of one integer always serialises");
                (dedup::changelog_key(*hash), Some(value))
            }
            StateChange::DedupExpired { hash } => (dedup::changelog_key(*hash), None),
        }
    }

    /// Applies one changelog record read back on start (`None` = tombstone).
    /// Records must come in changelog order; compaction may have removed
    /// older ones or not, either way the result is the same.
    pub fn restore_record(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), String> {
        if let Some(hash) = dedup::hash_from_changelog_key(key) {
            let hash = hash?;
            match value {
                None => {
                    self.dedup.remove(hash);
                }
                Some(bytes) => {
                    let record: DedupRecord = serde_json::from_slice(bytes)
                        .map_err(|error| format!("bad dedup record {key:?}: {error}"))?;
                    self.dedup.insert(hash, record.expires_at);
                }
            }
            return Ok(());
        }
        match value {
            None => {
                if let Some(slot) = self.index.remove(key) {
                    if let Some(entry) = self.slots.get_mut(slot) {
                        *entry = None;
                    }
                    self.free_slots.push(slot);
                }
                Ok(())
            }
            Some(bytes) => {
                let snapshot: ProductSnapshot = serde_json::from_slice(bytes)
                    .map_err(|error| format!("bad product record {key:?}: {error}"))?;
                if snapshot.product.product_id != key {
                    return Err(format!(
                        "product record {key:?} holds product {:?}",
                        snapshot.product.product_id
                    ));
                }
                let slot = match self.index.get(key).copied() {
                    Some(slot) => {
                        if let Some(state) = self.slots.get_mut(slot).and_then(Option::as_mut) {
                            state.product = snapshot.product;
                            state.last_update = snapshot.last_update;
                        }
                        slot
                    }
                    None => {
                        let slot = self.allocate_slot(ProductState {
                            product: snapshot.product,
                            last_update: snapshot.last_update,
                            stale_deadline: None,
                            queued_deadline: None,
                        });
                        self.index.insert(key.to_owned(), slot);
                        slot
                    }
                };
                self.arm_timer(slot, snapshot.stale_deadline);
                Ok(())
            }
        }
    }
}

/// Events and alerts for a product update against the stored product (which
/// includes order deductions). Workshop spec §2.6 step 3.
fn compare_product(config: &Config, old: &Product, new: &Product, now: i64, out: &mut Outputs) {
    let inventory = Change::new(old.inventory, new.inventory);
    let price = Change::new(old.price, new.price);
    if old.inventory != new.inventory {
        let delta = new.inventory - old.inventory;
        let (event_type, reason) = if new.inventory == 0 {
            (EventType::OutOfStock, "Product is now out of stock".to_owned())
        } else if old.inventory == 0 {
            (EventType::BackInStock, format!("Product restocked with {} units", new.inventory))
        } else if delta < 0 {
            (EventType::InventoryDecreased, format!("{} units sold/removed", -delta))
        } else {
            (EventType::InventoryIncreased, format!("{delta} units added to inventory"))
        };
        out.events.push(InventoryEvent::new(new, event_type, inventory, price, now, reason));
        if new.inventory == 0 {
            out.alerts.push(out_of_stock_alert(&new.product_id, now));
        } else if let Some(alert) = low_stock_alert(config, &new.product_id, new.inventory, now) {
            out.alerts.push(alert);
        }
    }

    let price_delta = new.price - old.price;
    if price_delta.abs() > 0.01 {
        if old.price == 0.0 {
            // kart: the workshop divided by zero here and wrote "Infinity%".
            let reason = format!("Price set to ${}", java_fixed2(new.price));
            out.events.push(InventoryEvent::new(new, EventType::PriceChanged, inventory, price, now, reason));
            return;
        }
        let percent = price_delta / old.price * 100.0;
        let direction = if price_delta > 0.0 { "increased" } else { "decreased" };
        let reason = format!(
            "Price {direction} by ${} ({}%)",
            java_fixed2(price_delta.abs()),
            java_fixed1(percent.abs())
        );
        out.events.push(InventoryEvent::new(new, EventType::PriceChanged, inventory, price, now, reason));
        if percent <= -10.0 {
            out.alerts.push(AlertEvent {
                alert_type: AlertType::PriceDrop,
                product_id: new.product_id.clone(),
                message: format!(
                    "Price dropped {}% from ${} to ${}",
                    java_fixed1(percent.abs()),
                    java_fixed2(old.price),
                    java_fixed2(new.price)
                ),
                severity: Severity::Info,
                timestamp: now,
            });
        }
    }
}

/// kart's one low-stock rule, for every path: `0 < stock < threshold`,
/// CRITICAL at 5 or fewer, else WARNING (design §6).
fn low_stock_alert(config: &Config, product_id: &str, stock: i64, now: i64) -> Option<AlertEvent> {
    (stock > 0 && stock < config.low_stock_threshold).then(|| AlertEvent {
        alert_type: AlertType::LowStock,
        product_id: product_id.to_owned(),
        message: format!("Low stock: only {stock} items remaining"),
        severity: if stock <= 5 { Severity::Critical } else { Severity::Warning },
        timestamp: now,
    })
}

fn out_of_stock_alert(product_id: &str, now: i64) -> AlertEvent {
    AlertEvent {
        alert_type: AlertType::OutOfStock,
        product_id: product_id.to_owned(),
        message: "Product is out of stock".to_owned(),
        severity: Severity::Critical,
        timestamp: now,
    }
}

/// Moves the line's strings into its outcome: every line gets exactly one.
fn outcome(
    line: OrderLine,
    outcome: Outcome,
    inventory: Option<(i64, i64)>,
    reason: Option<String>,
    now: i64,
) -> OrderOutcome {
    OrderOutcome {
        order_id: line.order_id,
        product_id: line.product_id,
        quantity: line.quantity,
        outcome,
        previous_inventory: inventory.map(|(previous, _)| previous),
        current_inventory: inventory.map(|(_, current)| current),
        reason,
        timestamp: now,
    }
}

#[cfg(test)]
mod tests;
