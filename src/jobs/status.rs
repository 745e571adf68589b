//! What a running embedded job reports about itself: the body of
//! `.kart/jobs/NAME.status.json`, read by `job status` and `job list`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    #[default]
    Starting,
    /// Reading its state back from the changelog.
    Restoring,
    Running,
    /// Finishing the transaction in flight.
    Stopping,
    Stopped,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Starting => "starting",
            JobState::Restoring => "restoring",
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Stopped => "stopped",
            JobState::Failed => "failed",
        }
    }
}

/// Metrics of a job (design §6): records in and out per topic, order line
/// outcomes, DLQ count, consumer lag, state size and the last commit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobStatus {
    pub name: String,
    pub state: JobState,
    pub pid: u32,
    /// Epoch ms.
    pub started_at: i64,
    /// Epoch ms of this snapshot.
    pub updated_at: i64,
    pub records_in: BTreeMap<String, u64>,
    pub records_out: BTreeMap<String, u64>,
    pub applied: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub dlq: u64,
    /// Records not yet read from the inputs, per `topic/partition`.
    pub lag: BTreeMap<String, i64>,
    pub products: usize,
    pub dedup_entries: usize,
    pub restored_records: u64,
    /// Batches committed (see `jobs::wal`).
    pub batches: u64,
    pub last_commit_at: Option<i64>,
    pub error: Option<String>,
}

impl JobStatus {
    pub fn total_in(&self) -> u64 {
        self.records_in.values().sum()
    }

    pub fn total_out(&self) -> u64 {
        self.records_out.values().sum()
    }

    pub fn total_lag(&self) -> Option<i64> {
        (!self.lag.is_empty()).then(|| self.lag.values().copied().filter(|l| *l > 0).sum())
    }
}
