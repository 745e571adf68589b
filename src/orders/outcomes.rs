//! `order place --wait`: the inventory job's verdict on each order line,
//! read from `kart-order-outcomes`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::exit::{KartError, Result};
use crate::inventory::model::OrderOutcome;
use crate::kafka::reader::partitions_of;
use crate::kafka::{wait_until_reachable, KafkaSettings, KartClientContext};
use crate::printer::Printer;

pub const ORDER_OUTCOMES: &str = "kart-order-outcomes";

/// A reader positioned at the end of `kart-order-outcomes` as it was
/// *before* the orders were published, so no outcome can slip past it.
pub struct OutcomeWatch {
    consumer: BaseConsumer<KartClientContext>,
}

impl OutcomeWatch {
    /// Blocking; call before publishing.
    pub fn start(kafka: &KafkaSettings, printer: &Printer) -> Result<OutcomeWatch> {
        let context = KartClientContext::new(printer.clone());
        let consumer: BaseConsumer<KartClientContext> = kafka
            .reader_config("kart-order-wait")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "20")
            .create_with_context(context.clone())
            .map_err(|e| KartError::infra("kafka-client", format!("cannot create a Kafka reader: {e}")))?;
        let metadata = wait_until_reachable(kafka, &context, |slice| consumer.fetch_metadata(Some(ORDER_OUTCOMES), slice))?;
        let (_, partitions) = partitions_of(&metadata, &[ORDER_OUTCOMES], &kafka.bootstrap)?.remove(0);
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            // tansu may answer less than the real end: starting early only
            // means reading a few older outcomes, which are filtered out.
            let (_, high) = wait_until_reachable(kafka, &context, |slice| consumer.fetch_watermarks(ORDER_OUTCOMES, partition, slice))?;
            assignment
                .add_partition_offset(ORDER_OUTCOMES, partition, Offset::Offset(high))
                .map_err(|e| KartError::infra("kafka", e.to_string()))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| KartError::infra("kafka", format!("cannot read {ORDER_OUTCOMES}: {e}")))?;
        Ok(OutcomeWatch { consumer })
    }

    /// The next outcome within `timeout` (blocking), or `None`.
    pub fn next(&self, timeout: Duration) -> Result<Option<OrderOutcome>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                Some(Ok(message)) => {
                    // Foreign or malformed records are not ours to judge.
                    if let Some(outcome) = message.payload().and_then(|p| serde_json::from_slice::<OrderOutcome>(p).ok()) {
                        return Ok(Some(outcome));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => return Err(KartError::infra("kafka", format!("cannot read {ORDER_OUTCOMES}: {error}"))),
                None => {}
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}

/// Collects the outcomes of `expected` lines; returns them and the lines
/// still missing at the deadline.
pub async fn collect(
    watch: Arc<OutcomeWatch>,
    expected: Vec<(String, String)>,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<(Vec<OrderOutcome>, Vec<(String, String)>)> {
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = cancelled.clone();
    let work = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        let mut missing = expected;
        let mut found = Vec::new();
        while !missing.is_empty() && !flag.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Some(outcome) = watch.next(left.min(Duration::from_millis(200)))? {
                if let Some(i) = missing.iter().position(|(o, p)| *o == outcome.order_id && *p == outcome.product_id) {
                    missing.remove(i);
                    found.push(outcome);
                }
            }
        }
        Ok((found, missing))
    });
    tokio::select! {
        result = work => result.map_err(|e| KartError::infra("internal", format!("a background task failed: {e}")))?,
        _ = shutdown.cancelled() => {
            cancelled.store(true, Ordering::Relaxed);
            Err(KartError::interrupted())
        }
    }
}

