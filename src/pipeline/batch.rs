//! Grouping items into batches: full at `max` items, or sent early once `linger` has passed
//! since the batch's first item, so a trickle of files (watch, uploads) is not held back.
//!
//! The batcher blocks on a full output channel; while the model is busy, prepared images pile up
//! upstream and the next batch is taken from them at once, full.

use std::time::Duration;

use async_channel::{Receiver, Sender, TryRecvError};
use tokio::time::Instant;

pub async fn run<T>(input: Receiver<T>, output: Sender<Vec<T>>, max: usize, linger: Duration) {
    let max = max.max(1);
    while let Ok(first) = input.recv().await {
        let mut batch = Vec::with_capacity(max);
        batch.push(first);
        let deadline = Instant::now() + linger;
        while batch.len() < max {
            match input.try_recv() {
                Ok(item) => batch.push(item),
                Err(TryRecvError::Closed) => break,
                Err(TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, input.recv()).await {
                        Ok(Ok(item)) => batch.push(item),
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
            }
        }
        if output.send(batch).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_batches_then_the_remainder() {
        let (tx, rx) = async_channel::bounded(100);
        let (btx, brx) = async_channel::bounded(100);
        for i in 0..10 {
            tx.send(i).await.unwrap();
        }
        drop(tx);
        run(rx, btx, 4, Duration::from_secs(60)).await;
        let sizes: Vec<usize> = std::iter::from_fn(|| brx.try_recv().ok())
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
    }

    #[tokio::test]
    async fn a_lone_item_leaves_after_the_linger() {
        let (tx, rx) = async_channel::bounded(10);
        let (btx, brx) = async_channel::bounded(10);
        let task = tokio::spawn(run(rx, btx, 8, Duration::from_millis(50)));
        tx.send(1).await.unwrap();
        let batch = brx.recv().await.unwrap();
        assert_eq!(batch, vec![1]);
        drop(tx);
        task.await.unwrap();
    }
}
