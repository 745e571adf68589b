//! The workshop's topics (design §4, workshop spec §1.1) and the topic
//! operations behind `kart topics`.

use std::collections::BTreeMap;

use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use super::admin::{Admin, TopicInfo, TopicSpec};
use crate::exit::{Class, KartError, Result};

/// One entry of the topic map: what a topic carries, who writes and reads it.
#[derive(Debug, Clone, Copy)]
pub struct TopicRole {
    pub name: &'static str,
    pub carries: &'static str,
    pub writers: &'static str,
    pub readers: &'static str,
    /// Configuration kart creates the topic with.
    pub configs: &'static [(&'static str, &'static str)],
}

const fn role(name: &'static str, carries: &'static str, writers: &'static str, readers: &'static str) -> TopicRole {
    TopicRole { name, carries, writers, readers, configs: &[] }
}

/// kart's default set: the workshop's twelve, the four it uses without
/// creating them, and kart's own three.
pub const DEFAULT_TOPICS: &[TopicRole] = &[
    role("products", "full Product records (11 fields)", "inventory job", "API product cache, kart watch"),
    role("product-updates", "Product records to set stock and price", "people (Kpow, kart products)", "inventory job"),
    role("order-events", "one order line {orderId, productId, quantity, timestamp}", "checkout / kart order, CDC job", "inventory job"),
    role("inventory-events", "InventoryEvent (13 fields) per stock or price change", "inventory job", "API Kafka Streams, kart watch"),
    role("inventory-alerts", "LOW_STOCK, OUT_OF_STOCK, PRICE_DROP, INSUFFICIENT_STOCK alerts", "inventory job", "kart watch"),
    role("websocket_fanout", "INVENTORY_UPDATE envelopes of inventory events", "inventory job, API chat", "nobody (UI uses inventory-events)"),
    role("ecommerce_events", "cart, tracking and order events of the shop", "API", "nobody"),
    role("ecommerce_processing_fanout", "processed shop events for browsers", "nobody", "API websocket"),
    role("processing_fanout", "processed chat events", "nobody", "API chat, Kafka Streams"),
    role("product-recommendations", "basket recommendations", "nobody", "API recommendations"),
    role("recommendations", "reserved by the workshop", "nobody", "nobody"),
    role("inventory_updates", "reserved by the workshop", "nobody", "nobody"),
    role("shopping-cart-events", "reserved by the workshop", "nobody", "nobody"),
    role("basket-patterns", "reserved by the workshop", "nobody", "nobody"),
    role("shopping-assistant-chat", "assistant chat messages", "API assistant", "nobody"),
    role("assistant-responses", "assistant answers", "nobody", "API assistant"),
    role("inventory-dlq", "poison and unprocessable messages with the reason", "inventory job", "people (kart tail)"),
    role("kart-order-outcomes", "one outcome per order line: applied, rejected, duplicate, dlq", "inventory job", "kart order --wait"),
    TopicRole {
        name: "kart-inventory-state",
        carries: "the inventory job's state changelog (compacted)",
        writers: "inventory job",
        readers: "inventory job on restart",
        configs: &[("cleanup.policy", "compact")],
    },
];

pub fn role_of(name: &str) -> Option<&'static TopicRole> {
    DEFAULT_TOPICS.iter().find(|r| r.name == name)
}

/// Internal topics that `delete --all` spares.
pub fn is_internal(name: &str) -> bool {
    name.starts_with('_') || name.starts_with("instaclustr")
}

#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// Empty: the default set.
    pub names: Vec<String>,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i32>,
    pub configs: Vec<(String, String)>,
    /// Local mode defaults to replication factor 1; remote to the cluster's.
    pub local: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicOutcome {
    pub name: String,
    /// `created`, `exists` or `failed`.
    pub status: &'static str,
    pub partitions: Option<i32>,
    /// Differences between what was asked and what exists.
    pub drift: Vec<String>,
    pub error: Option<String>,
}

/// Creates the missing topics; reports existing ones and their drift.
pub async fn create(admin: &Admin, request: &CreateRequest) -> Result<(Vec<TopicOutcome>, Option<KartError>)> {
    let names: Vec<String> = if request.names.is_empty() {
        DEFAULT_TOPICS.iter().map(|r| r.name.to_string()).collect()
    } else {
        request.names.clone()
    };
    let wanted_partitions = request.partitions.unwrap_or(1);
    let replication_factor = request.replication_factor.or(if request.local { Some(1) } else { None });
    let specs: Vec<TopicSpec> = names
        .iter()
        .map(|name| {
            let mut configs: BTreeMap<String, String> =
                role_of(name).map(|r| r.configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap_or_default();
            configs.extend(request.configs.iter().cloned());
            TopicSpec { name: name.clone(), partitions: wanted_partitions, replication_factor, configs: configs.into_iter().collect() }
        })
        .collect();

    let existing: BTreeMap<String, TopicInfo> = admin.topics().await?.into_iter().map(|t| (t.name.clone(), t)).collect();
    let (present, missing): (Vec<&TopicSpec>, Vec<&TopicSpec>) = specs.iter().partition(|s| existing.contains_key(&s.name));
    let to_create: Vec<TopicSpec> = missing.into_iter().cloned().collect();
    let created = admin.create(&to_create).await?;

    let mut outcomes = Vec::new();
    let mut failure: Option<KartError> = None;
    let mut raced: Vec<&TopicSpec> = Vec::new();
    for (name, result) in created {
        let spec = to_create.iter().find(|s| s.name == name);
        match result {
            Ok(()) => outcomes.push(TopicOutcome { name, status: "created", partitions: Some(wanted_partitions), drift: vec![], error: None }),
            // Another client created it between our metadata read and the request.
            Err(RDKafkaErrorCode::TopicAlreadyExists) => raced.extend(spec),
            Err(code) => {
                let class = match code {
                    RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::InvalidPartitions
                    | RDKafkaErrorCode::InvalidReplicationFactor
                    | RDKafkaErrorCode::InvalidTopic
                    | RDKafkaErrorCode::InvalidRequest => Class::User,
                    _ => Class::Infra,
                };
                let message = format!("cannot create topic {name}: {code}");
                failure.get_or_insert(KartError { class, code: "topic-create-failed", message: message.clone(), hint: None });
                outcomes.push(TopicOutcome { name, status: "failed", partitions: None, drift: vec![], error: Some(code.to_string()) });
            }
        }
    }

    let mut check: Vec<&TopicSpec> = present;
    check.extend(raced);
    if !check.is_empty() {
        let refreshed: BTreeMap<String, TopicInfo> = if check.iter().any(|s| !existing.contains_key(&s.name)) {
            admin.topics().await?.into_iter().map(|t| (t.name.clone(), t)).collect()
        } else {
            existing.clone()
        };
        let names: Vec<String> = check.iter().filter(|s| !s.configs.is_empty()).map(|s| s.name.clone()).collect();
        // Brokers that cannot describe configs simply get no config drift check.
        let configs = if names.is_empty() { Default::default() } else { admin.configs(&names).await.unwrap_or_default() };
        for spec in check {
            let partitions = refreshed.get(&spec.name).map(|t| t.partitions.len() as i32);
            let mut drift = Vec::new();
            if let Some(actual) = partitions.filter(|actual| *actual != spec.partitions) {
                drift.push(format!("partitions: wanted {}, has {actual}", spec.partitions));
            }
            if let Some(entries) = configs.get(&spec.name) {
                for (key, wanted) in &spec.configs {
                    let actual = entries.iter().find(|(k, _, _)| k == key).and_then(|(_, v, _)| v.clone());
                    if actual.as_deref() != Some(wanted.as_str()) {
                        drift.push(format!("{key}: wanted {wanted}, has {}", actual.unwrap_or_else(|| "unset".into())));
                    }
                }
            }
            outcomes.push(TopicOutcome { name: spec.name.clone(), status: "exists", partitions, drift, error: None });
        }
    }
    // Report in the order asked.
    outcomes.sort_by_key(|o| names.iter().position(|n| *n == o.name).unwrap_or(usize::MAX));
    Ok((outcomes, failure))
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedTopic {
    pub name: String,
    pub partitions: usize,
    pub internal: bool,
    /// Part of kart's default set.
    pub workshop: bool,
    pub carries: Option<&'static str>,
    pub writers: Option<&'static str>,
    pub readers: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    pub topics: Vec<ListedTopic>,
    /// Default topics the broker does not have.
    pub missing: Vec<&'static str>,
}

pub async fn list(admin: &Admin) -> Result<TopicList> {
    let topics = admin.topics().await?;
    let listed: Vec<ListedTopic> = topics
        .iter()
        .map(|t| {
            let role = role_of(&t.name);
            ListedTopic {
                name: t.name.clone(),
                partitions: t.partitions.len(),
                internal: is_internal(&t.name),
                workshop: role.is_some(),
                carries: role.map(|r| r.carries),
                writers: role.map(|r| r.writers),
                readers: role.map(|r| r.readers),
            }
        })
        .collect();
    let missing = DEFAULT_TOPICS.iter().map(|r| r.name).filter(|n| !topics.iter().any(|t| t.name == *n)).collect();
    Ok(TopicList { topics: listed, missing })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOutcome {
    pub name: String,
    /// `deleted`, `missing` or `failed`.
    pub status: &'static str,
    pub error: Option<String>,
}

/// Deletes the named topics, or every non-internal one with `all`.
pub async fn delete(admin: &Admin, names: &[String], all: bool) -> Result<(Vec<DeleteOutcome>, Option<KartError>)> {
    let existing: Vec<String> = admin.topics().await?.into_iter().map(|t| t.name).collect();
    let targets: Vec<String> = if all {
        existing.iter().filter(|n| !is_internal(n)).cloned().collect()
    } else {
        names.to_vec()
    };
    let (present, absent): (Vec<String>, Vec<String>) = targets.into_iter().partition(|n| existing.contains(n));
    let mut outcomes: Vec<DeleteOutcome> =
        absent.into_iter().map(|name| DeleteOutcome { name, status: "missing", error: None }).collect();
    let mut failure = None;
    for (name, result) in admin.delete(&present).await? {
        match result {
            Ok(()) | Err(RDKafkaErrorCode::UnknownTopicOrPartition) => outcomes.push(DeleteOutcome { name, status: "deleted", error: None }),
            Err(code) => {
                failure.get_or_insert(KartError::infra("topic-delete-failed", format!("cannot delete topic {name}: {code}")));
                outcomes.push(DeleteOutcome { name, status: "failed", error: Some(code.to_string()) });
            }
        }
    }
    outcomes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((outcomes, failure))
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionView {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView {
    pub name: String,
    pub value: Option<String>,
    pub is_default: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicDescription {
    pub name: String,
    pub carries: Option<&'static str>,
    pub partitions: Vec<PartitionView>,
    /// `None` when the broker does not describe configs.
    pub configs: Option<Vec<ConfigView>>,
}

pub async fn describe(admin: &Admin, name: &str) -> Result<TopicDescription> {
    let topics = admin.topics().await?;
    let topic = topics.into_iter().find(|t| t.name == name).ok_or_else(|| {
        KartError::user("topic-not-found", format!("topic {name} does not exist on {}", admin.settings.bootstrap))
            .with_hint("`kart topics list` shows the topics; `kart topics create` creates the workshop's set")
    })?;
    let configs = admin.configs(&[name.to_string()]).await.ok().and_then(|mut m| m.remove(name)).map(|entries| {
        let mut views: Vec<ConfigView> =
            entries.into_iter().map(|(name, value, is_default)| ConfigView { name, value, is_default }).collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    });
    Ok(TopicDescription {
        name: topic.name,
        carries: role_of(name).map(|r| r.carries),
        partitions: topic
            .partitions
            .into_iter()
            .map(|p| PartitionView { partition: p.id, leader: p.leader, replicas: p.replicas, isr: p.isr })
            .collect(),
        configs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_is_the_workshops_plus_karts() {
        assert_eq!(DEFAULT_TOPICS.len(), 12 + 4 + 3);
        let mut names: Vec<_> = DEFAULT_TOPICS.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DEFAULT_TOPICS.len());
    }

    #[test]
    fn internal_topics_are_spared() {
        assert!(is_internal("__consumer_offsets"));
        assert!(is_internal("_schemas"));
        assert!(is_internal("instaclustr_health"));
        assert!(!is_internal("products"));
    }
}
