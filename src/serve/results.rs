//! The batches just scored, kept in memory so that the page can offer them as CSV, Parquet and
//! a log; bounded in count and age, since a server runs for weeks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::verdict::Verdict;

pub struct Batch {
    pub id: String,
    pub rows: Vec<Verdict>,
    pub log: String,
    stored: Instant,
}

pub struct Results {
    batches: Mutex<VecDeque<Arc<Batch>>>,
    max_batches: usize,
    max_age: Duration,
    counter: AtomicU64,
}

impl Results {
    pub fn new(max_batches: usize, max_age: Duration) -> Self {
        Results {
            batches: Mutex::new(VecDeque::new()),
            max_batches: max_batches.max(1),
            max_age,
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh batch id: unguessable enough that one client cannot read another's results by
    /// counting, and safe in a URL.
    pub fn new_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = blake3::Hasher::new();
        h.update(&n.to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(format!("{:?}{:?}", SystemTime::now(), Instant::now()).as_bytes());
        h.finalize().to_hex()[..20].to_string()
    }

    pub fn insert(&self, id: String, rows: Vec<Verdict>, log: String) -> Arc<Batch> {
        let batch = Arc::new(Batch {
            id,
            rows,
            log,
            stored: Instant::now(),
        });
        let mut batches = self.batches.lock().expect("no panics while locked");
        batches.push_back(batch.clone());
        while batches.len() > self.max_batches {
            batches.pop_front();
        }
        batch
    }

    pub fn get(&self, id: &str) -> Option<Arc<Batch>> {
        let mut batches = self.batches.lock().expect("no panics while locked");
        while batches
            .front()
            .is_some_and(|b| b.stored.elapsed() > self.max_age)
        {
            batches.pop_front();
        }
        batches.iter().find(|b| b.id == id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_batches_within_count_and_age() {
        let results = Results::new(2, Duration::from_secs(3600));
        let ids: Vec<String> = (0..3).map(|_| results.new_id()).collect();
        assert_ne!(ids[0], ids[1]);
        for id in &ids {
            results.insert(id.clone(), Vec::new(), String::new());
        }
        assert!(results.get(&ids[0]).is_none());
        assert!(results.get(&ids[2]).is_some());

        let results = Results::new(5, Duration::ZERO);
        results.insert("old".into(), Vec::new(), String::new());
        std::thread::sleep(Duration::from_millis(5));
        assert!(results.get("old").is_none());
    }
}
