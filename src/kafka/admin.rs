//! A thin, deadline-aware wrapper around rdkafka's admin client.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::{wait_until_reachable, KafkaSettings, KartClientContext};
use crate::exit::{KartError, Result};
use crate::printer::Printer;

#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub id: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// `None`: the cluster's default.
    pub replication_factor: Option<i32>,
    pub configs: Vec<(String, String)>,
}

/// Admin operations for one command run.
///
/// The clients are never dropped: dropping rdkafka's admin client joins a
/// polling thread that wakes every 100 ms, which made a 10 ms command take
/// 60–100 ms longer. A command creates one `Admin` and the process exits
/// right after, so nothing accumulates.
pub struct Admin {
    client: ManuallyDrop<Arc<AdminClient<KartClientContext>>>,
    /// Metadata goes through a plain client whose main queue we poll: the
    /// admin client never serves it, so its error callbacks (where a wrong
    /// password shows up) would never fire.
    probe: ManuallyDrop<Arc<BaseProducer<KartClientContext>>>,
    context: KartClientContext,
    pub settings: KafkaSettings,
}

impl Admin {
    /// Connects and fetches metadata once, so that an unreachable broker or a
    /// wrong password fails here, within the connect timeout.
    pub async fn connect(settings: &KafkaSettings, printer: &Printer) -> Result<Admin> {
        let context = KartClientContext::new(printer.clone());
        let client: AdminClient<KartClientContext> = settings
            .client_config()
            .create_with_context(context.clone())
            .map_err(|e| KartError::user("kafka-config", format!("invalid Kafka client configuration: {e}")))?;
        let probe: BaseProducer<KartClientContext> = settings
            .client_config()
            .create_with_context(context.clone())
            .map_err(|e| KartError::user("kafka-config", format!("invalid Kafka client configuration: {e}")))?;
        let admin = Admin {
            client: ManuallyDrop::new(Arc::new(client)),
            probe: ManuallyDrop::new(Arc::new(probe)),
            context,
            settings: settings.clone(),
        };
        admin.topics().await?;
        Ok(admin)
    }

    fn options(&self) -> AdminOptions {
        let timeout = self.settings.connect_timeout.max(Duration::from_secs(1));
        AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout))
    }

    async fn metadata(&self) -> Result<rdkafka::metadata::Metadata> {
        let probe = Arc::clone(&*self.probe);
        let context = self.context.clone();
        let settings = self.settings.clone();
        tokio::task::spawn_blocking(move || {
            wait_until_reachable(&settings, &context, |slice| {
                probe.poll(Duration::ZERO); // delivers error callbacks
                probe.client().fetch_metadata(None, slice)
            })
        })
        .await
        .map_err(|e| KartError::infra("internal", format!("metadata task failed: {e}")))?
    }

    /// The brokers as the cluster advertises them: (id, host, port). Clients
    /// connect to these addresses after bootstrapping, so each must be
    /// reachable from this machine (`kart doctor` checks).
    pub async fn brokers(&self) -> Result<Vec<(i32, String, i32)>> {
        let metadata = self.metadata().await?;
        Ok(metadata.brokers().iter().map(|b| (b.id(), b.host().to_string(), b.port())).collect())
    }

    /// Every topic the broker reports, sorted by name.
    pub async fn topics(&self) -> Result<Vec<TopicInfo>> {
        let metadata = self.metadata().await?;
        let mut topics: Vec<TopicInfo> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() || !t.partitions().is_empty())
            .map(|t| TopicInfo {
                name: t.name().to_string(),
                partitions: t
                    .partitions()
                    .iter()
                    .map(|p| PartitionInfo { id: p.id(), leader: p.leader(), replicas: p.replicas().to_vec(), isr: p.isr().to_vec() })
                    .collect(),
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Creates topics; returns per topic `Ok` or the broker's error code.
    pub async fn create(&self, specs: &[TopicSpec]) -> Result<Vec<(String, std::result::Result<(), RDKafkaErrorCode>)>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let new_topics: Vec<NewTopic> = specs
            .iter()
            .map(|s| {
                let mut t = NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(s.replication_factor.unwrap_or(-1)));
                for (k, v) in &s.configs {
                    t = t.set(k, v);
                }
                t
            })
            .collect();
        let results = self.client.create_topics(new_topics.iter(), &self.options()).await.map_err(|e| self.failure("create topics", e))?;
        Ok(results.into_iter().map(|r| match r { Ok(name) => (name, Ok(())), Err((name, code)) => (name, Err(code)) }).collect())
    }

    pub async fn delete(&self, names: &[String]) -> Result<Vec<(String, std::result::Result<(), RDKafkaErrorCode>)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let results = self.client.delete_topics(&refs, &self.options()).await.map_err(|e| self.failure("delete topics", e))?;
        Ok(results.into_iter().map(|r| match r { Ok(name) => (name, Ok(())), Err((name, code)) => (name, Err(code)) }).collect())
    }

    /// Names of the consumer groups the broker knows.
    pub async fn groups(&self) -> Result<Vec<String>> {
        let probe = Arc::clone(&*self.probe);
        let timeout = self.settings.connect_timeout;
        let mut names = tokio::task::spawn_blocking(move || {
            probe.client().fetch_group_list(None, timeout).map(|list| list.groups().iter().map(|g| g.name().to_string()).collect::<Vec<_>>())
        })
        .await
        .map_err(|e| KartError::infra("internal", format!("group list task failed: {e}")))?
        .map_err(|e| self.failure("list consumer groups", e))?;
        names.sort();
        Ok(names)
    }

    /// Deletes consumer groups; per group `Ok` or the broker's error code.
    pub async fn delete_groups(&self, names: &[String]) -> Result<Vec<(String, std::result::Result<(), RDKafkaErrorCode>)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let results = self.client.delete_groups(&refs, &self.options()).await.map_err(|e| self.failure("delete consumer groups", e))?;
        Ok(results.into_iter().map(|r| match r { Ok(name) => (name, Ok(())), Err((name, code)) => (name, Err(code)) }).collect())
    }

    /// Topic configurations (non-default entries first is the caller's business).
    /// `Ok(None)` when the broker does not answer DescribeConfigs.
    pub async fn configs(&self, names: &[String]) -> Result<HashMap<String, Vec<(String, Option<String>, bool)>>> {
        let specs: Vec<ResourceSpecifier> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let results = self.client.describe_configs(specs.iter(), &self.options()).await.map_err(|e| self.failure("describe configs", e))?;
        let mut out = HashMap::new();
        for (name, result) in names.iter().zip(results) {
            if let Ok(resource) = result {
                let entries = resource.entries.iter().map(|e| (e.name.clone(), e.value.clone(), e.is_default)).collect();
                out.insert(name.clone(), entries);
            }
        }
        Ok(out)
    }

    fn failure(&self, what: &str, error: rdkafka::error::KafkaError) -> KartError {
        if self.context.auth_failed() {
            return self.settings.auth_failed();
        }
        KartError::infra("kafka-error", format!("cannot {what} on {}: {error}", self.settings.bootstrap))
    }
}
