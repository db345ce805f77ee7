//! Which rows each batch of an epoch holds, and the seeds that make a resumed run draw the
//! same batches and dropout masks as an uninterrupted one.

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::data::EncodedSplit;
use crate::spec::StageSpec;

/// Seed for the shuffle of one epoch: independent of how many random numbers anything else drew.
pub(super) fn epoch_seed(seed: u64, stage: usize, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((stage as u64) << 32)
        .wrapping_add(epoch as u64)
}

pub(super) fn batches_per_epoch(stage: &StageSpec, rows: usize) -> usize {
    let all = rows.div_ceil(stage.batch_size);
    match stage.steps_per_epoch {
        Some(steps) => all.min(steps * stage.gradient_accumulation),
        None => all,
    }
}

/// The batches of one epoch, a function of the seed only (so a resumed run sees the same):
/// shuffled rows cut into batches; with `bucket_by_length`, rows of similar length are
/// batched together (within windows of 32 batches, then the batch order is shuffled), so
/// dynamic padding pads little.
pub(super) fn epoch_batches(
    split: &EncodedSplit,
    stage: &StageSpec,
    seed: u64,
    max_batches: usize,
) -> Vec<Vec<usize>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..split.len()).collect();
    if stage.shuffle {
        order.shuffle(&mut rng);
    }
    let size = stage.batch_size.max(1);
    let mut batches: Vec<Vec<usize>> = if stage.bucket_by_length {
        let mut out = Vec::new();
        for window in order.chunks(size * 32) {
            let mut w = window.to_vec();
            w.sort_by_key(|&r| split.length(r));
            out.extend(w.chunks(size).map(<[usize]>::to_vec));
        }
        if stage.shuffle {
            out.shuffle(&mut rng);
        }
        out
    } else {
        order.chunks(size).map(<[usize]>::to_vec).collect()
    };
    batches.truncate(max_batches);
    batches
}

/// Backend RNG seed for one batch (dropout), independent of everything drawn before it.
pub(super) fn step_seed(seed: u64, stage: usize, epoch: usize, batch: usize) -> u64 {
    epoch_seed(seed, stage, epoch)
        .wrapping_mul(0x2545_F491_4F6C_DD1D)
        .wrapping_add(batch as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::encoded::{Padded, RowsBuilder, Tokens};

    fn stage(bucket: bool) -> StageSpec {
        let text = format!(
            "batch_size = 4\nbucket_by_length = {bucket}\noptimizer = {{ type = \"sgd\" }}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn length_buckets_cover_every_row_once_with_little_padding() {
        let lengths: Vec<usize> = (0..40).map(|i| (i * 37) % 29 + 1).collect();
        let mut rows = RowsBuilder::new(100);
        for &n in &lengths {
            let ids = vec![1; n];
            rows.push(
                &Tokens {
                    ids,
                    type_ids: vec![],
                },
                0,
            );
        }
        let padding = Padded {
            len: 30,
            dynamic: true,
            pad_id: 0,
        };
        let split = EncodedSplit::new(std::sync::Arc::new(rows.finish(&[0; 32])), padding);
        let bucketed = epoch_batches(&split, &stage(true), 7, usize::MAX);
        assert_eq!(
            bucketed,
            epoch_batches(&split, &stage(true), 7, usize::MAX),
            "seeded"
        );
        let mut all: Vec<usize> = bucketed.concat();
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
        let padded = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| b.iter().map(|&r| lengths[r]).max().unwrap() * b.len())
                .sum()
        };
        let plain = epoch_batches(&split, &stage(false), 7, usize::MAX);
        assert!(
            padded(&bucketed) < padded(&plain),
            "{} vs {}",
            padded(&bucketed),
            padded(&plain)
        );
    }
}
