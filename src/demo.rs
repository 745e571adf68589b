//! `kart demo`'s decisions, kept pure so they are tested without a broker:
//! which orders to place given the current stock, and whether each outcome
//! the inventory job reported is the one the demo promised.
//!
//! The orders are chosen from the stock as it is *now*, not from the
//! catalog's starting numbers: that is what makes the demo idempotent. A
//! second run (or a run after a student's own orders) still places two
//! orders that fit and one that does not.

use serde::Serialize;

use crate::inventory::core::OnInsufficient;
use crate::inventory::model::{OrderOutcome, Outcome};

/// One product as the demo sees it before ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stock {
    pub product_id: String,
    pub name: String,
    pub inventory: i64,
}

/// What the inventory job must answer for an order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Deducted: the stock drops by the quantity.
    Applied,
    /// More than the stock: nothing deducted, the line rejected.
    Rejected,
    /// More than the stock with `KART_ON_INSUFFICIENT=clamp` (the workshop's
    /// behaviour): the stock goes to 0.
    Clamped,
}

/// An order of one line the demo places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedOrder {
    pub product_id: String,
    pub name: String,
    pub quantity: i64,
    /// The stock the demo expects the job to see when the line arrives.
    pub stock_before: i64,
    pub expect: Expect,
}

/// Two orders that fit (2 units of the best-stocked product, 1 of the next)
/// and one that does not (one unit more than the stock of the scarcest
/// other product). `Err` says why no such plan exists.
pub fn plan(stock: &[Stock], on_insufficient: OnInsufficient) -> Result<Vec<PlannedOrder>, String> {
    let mut by_stock: Vec<&Stock> = stock.iter().filter(|s| s.inventory >= 0).collect();
    by_stock.sort_by(|a, b| b.inventory.cmp(&a.inventory).then_with(|| a.product_id.cmp(&b.product_id)));
    let mut orders: Vec<PlannedOrder> = Vec::new();
    for (stock, wanted) in by_stock.iter().filter(|s| s.inventory >= 1).zip([2, 1]) {
        orders.push(PlannedOrder {
            product_id: stock.product_id.clone(),
            name: stock.name.clone(),
            quantity: wanted.min(stock.inventory),
            stock_before: stock.inventory,
            expect: Expect::Applied,
        });
    }
    if orders.is_empty() {
        return Err(if by_stock.is_empty() {
            "no product has a known stock yet".to_string()
        } else {
            "every product is sold out".to_string()
        });
    }
    // The scarcest product not ordered yet; with fewer than three products,
    // the last one ordered, at what its stock will be after that order.
    let scarce = by_stock.iter().rev().find(|s| orders.iter().all(|o| o.product_id != s.product_id));
    let (product_id, name, stock_before) = match scarce {
        Some(s) => (s.product_id.clone(), s.name.clone(), s.inventory),
        None => {
            let last = orders.last().map(|o| (o.product_id.clone(), o.name.clone(), o.stock_before - o.quantity));
            last.ok_or("no product to order")?
        }
    };
    let expect = match on_insufficient {
        OnInsufficient::Reject => Expect::Rejected,
        OnInsufficient::Clamp => Expect::Clamped,
    };
    orders.push(PlannedOrder { product_id, name, quantity: stock_before + 1, stock_before, expect });
    Ok(orders)
}

/// Whether an outcome is the promised one, and in words what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub verified: bool,
    pub detail: String,
}

/// Checks the job's answer against the plan. The stock the job saw may
/// differ from the demo's reading (another order in between); what must
/// hold is the arithmetic of the answer and its kind.
pub fn verify(order: &PlannedOrder, outcome: Option<&OrderOutcome>) -> Verdict {
    let Some(outcome) = outcome else {
        return Verdict { verified: false, detail: "no outcome arrived".into() };
    };
    let (before, after) = (outcome.previous_inventory, outcome.current_inventory);
    let stock = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
    let reason = outcome.reason.clone().unwrap_or_default();
    let verified = match (order.expect, outcome.outcome) {
        (Expect::Applied, Outcome::Applied) => matches!((before, after), (Some(b), Some(a)) if b - a == order.quantity),
        (Expect::Rejected, Outcome::Rejected) => before.is_some() && before == after,
        (Expect::Clamped, Outcome::Applied) => after == Some(0),
        _ => false,
    };
    let detail = match outcome.outcome {
        Outcome::Applied => format!("applied: stock {} → {}", stock(before), stock(after)),
        // The job's reason names the order's UUID, which the line beside it
        // already carries; the numbers are what a reader wants.
        Outcome::Rejected if before.is_some() => format!("rejected: {} in stock, {} requested", stock(before), order.quantity),
        Outcome::Rejected => format!("rejected: {reason}"),
        Outcome::Duplicate => format!("duplicate: {reason}"),
        Outcome::Dlq => format!("not processed: {reason}"),
    };
    let detail = if verified {
        detail
    } else {
        let wanted = match order.expect {
            Expect::Applied => format!("{} fewer in stock", order.quantity),
            Expect::Rejected => "a rejection with the stock unchanged".to_string(),
            Expect::Clamped => "the stock clamped to 0".to_string(),
        };
        format!("{detail} (expected {wanted})")
    };
    Verdict { verified, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stock(id: &str, inventory: i64) -> Stock {
        Stock { product_id: id.into(), name: format!("name of {id}"), inventory }
    }

    fn outcome(kind: Outcome, before: i64, after: i64) -> OrderOutcome {
        OrderOutcome {
            order_id: "o".into(),
            product_id: "P".into(),
            quantity: 0,
            outcome: kind,
            previous_inventory: Some(before),
            current_inventory: Some(after),
            reason: Some("why".into()),
            timestamp: 0,
        }
    }

    #[test]
    fn two_orders_that_fit_then_one_beyond_the_scarcest_stock() {
        let catalog = [stock("A", 10), stock("B", 50), stock("C", 3), stock("D", 20)];
        let orders = plan(&catalog, OnInsufficient::Reject).unwrap();
        let summary: Vec<(&str, i64, Expect)> = orders.iter().map(|o| (o.product_id.as_str(), o.quantity, o.expect)).collect();
        assert_eq!(summary, [("B", 2, Expect::Applied), ("D", 1, Expect::Applied), ("C", 4, Expect::Rejected)]);
        assert_eq!(orders[2].stock_before, 3);
    }

    #[test]
    fn a_sold_out_product_is_the_one_rejected_and_never_ordered_to_fit() {
        let orders = plan(&[stock("A", 0), stock("B", 1), stock("C", 5)], OnInsufficient::Reject).unwrap();
        let summary: Vec<(&str, i64)> = orders.iter().map(|o| (o.product_id.as_str(), o.quantity)).collect();
        assert_eq!(summary, [("C", 2), ("B", 1), ("A", 1)]);
    }

    #[test]
    fn one_product_is_ordered_then_overdrawn_at_its_new_stock() {
        let orders = plan(&[stock("A", 5)], OnInsufficient::Reject).unwrap();
        let summary: Vec<(&str, i64, i64)> = orders.iter().map(|o| (o.product_id.as_str(), o.quantity, o.stock_before)).collect();
        assert_eq!(summary, [("A", 2, 5), ("A", 4, 3)]);
    }

    #[test]
    fn clamp_mode_expects_the_workshop_s_clamp() {
        let orders = plan(&[stock("A", 5), stock("B", 5), stock("C", 2)], OnInsufficient::Clamp).unwrap();
        assert_eq!(orders[2].expect, Expect::Clamped);
        assert!(verify(&orders[2], Some(&outcome(Outcome::Applied, 2, 0))).verified);
        assert!(!verify(&orders[2], Some(&outcome(Outcome::Rejected, 2, 2))).verified);
    }

    #[test]
    fn nothing_in_stock_is_said_plainly() {
        assert_eq!(plan(&[stock("A", 0)], OnInsufficient::Reject), Err("every product is sold out".to_string()));
        assert_eq!(plan(&[], OnInsufficient::Reject), Err("no product has a known stock yet".to_string()));
    }

    #[test]
    fn verification_checks_the_kind_and_the_arithmetic() {
        let fits = PlannedOrder { product_id: "P".into(), name: "n".into(), quantity: 2, stock_before: 10, expect: Expect::Applied };
        assert_eq!(verify(&fits, Some(&outcome(Outcome::Applied, 10, 8))), Verdict { verified: true, detail: "applied: stock 10 → 8".into() });
        // Another order got in first: still verified, the arithmetic holds.
        assert!(verify(&fits, Some(&outcome(Outcome::Applied, 9, 7))).verified);
        assert!(!verify(&fits, Some(&outcome(Outcome::Applied, 10, 9))).verified);
        assert!(!verify(&fits, Some(&outcome(Outcome::Rejected, 10, 10))).verified);
        assert!(!verify(&fits, Some(&outcome(Outcome::Duplicate, 10, 10))).verified);
        assert_eq!(verify(&fits, None), Verdict { verified: false, detail: "no outcome arrived".into() });

        let beyond = PlannedOrder { expect: Expect::Rejected, quantity: 4, stock_before: 3, ..fits };
        assert_eq!(verify(&beyond, Some(&outcome(Outcome::Rejected, 3, 3))), Verdict { verified: true, detail: "rejected: 3 in stock, 4 requested".into() });
        let wrong = verify(&beyond, Some(&outcome(Outcome::Applied, 3, 0)));
        assert_eq!(wrong.detail, "applied: stock 3 → 0 (expected a rejection with the stock unchanged)");
        assert!(!wrong.verified);
    }

    proptest! {
        /// Whatever the stock, a plan (when one exists) orders within stock
        /// first and exactly one unit beyond it last.
        #[test]
        fn plans_fit_then_overdraw(inventories in proptest::collection::vec(-3i64..100, 0..6)) {
            let catalog: Vec<Stock> = inventories.iter().enumerate().map(|(i, n)| stock(&format!("P{i}"), *n)).collect();
            match plan(&catalog, OnInsufficient::Reject) {
                Ok(orders) => {
                    let (last, fitting) = orders.split_last().unwrap();
                    prop_assert!(!fitting.is_empty() && fitting.len() <= 2);
                    for order in fitting {
                        prop_assert!(order.quantity >= 1 && order.quantity <= order.stock_before);
                    }
                    prop_assert_eq!(last.quantity, last.stock_before + 1);
                    prop_assert_eq!(last.expect, Expect::Rejected);
                }
                Err(_) => prop_assert!(inventories.iter().all(|n| *n < 1)),
            }
        }
    }
}
