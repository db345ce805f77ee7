//! Encoded splits and the tensors of one batch.

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::graph::compile::Inputs;
use crate::vectorize::{Encoded, Vectorizer};

use super::Example;

/// A split encoded once up front; batches are row gathers.
#[derive(Clone, Debug, Default)]
pub struct EncodedSplit {
    pub enc: Encoded,
    pub labels: Vec<i32>,
}

impl EncodedSplit {
    pub fn new(vectorizer: &Vectorizer, examples: &[Example]) -> Self {
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        EncodedSplit {
            enc: vectorizer.encode(&texts),
            labels: examples.iter().map(|e| e.label as i32).collect(),
        }
    }
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Model inputs and labels for `rows`.
    pub fn batch<B: Backend>(
        &self,
        rows: &[usize],
        device: &B::Device,
    ) -> (Inputs<B>, Tensor<B, 1, Int>) {
        let len = if self.enc.dynamic {
            rows.iter()
                .map(|&r| self.enc.lengths[r])
                .max()
                .unwrap_or(1)
                .max(1)
        } else {
            self.enc.len
        };
        let full = self.enc.len;
        let n = rows.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        for &r in rows {
            let span = r * full..r * full + len;
            ids.extend_from_slice(&self.enc.ids[span.clone()]);
            mask.extend_from_slice(&self.enc.mask[span.clone()]);
            types.extend_from_slice(&self.enc.token_type_ids[span]);
        }
        let labels: Vec<i32> = rows.iter().map(|&r| self.labels[r]).collect();
        (
            Inputs {
                ids: Tensor::from_data(TensorData::new(ids, [n, len]), device),
                mask: Tensor::from_data(TensorData::new(mask, [n, len]), device),
                token_type_ids: Tensor::from_data(TensorData::new(types, [n, len]), device),
            },
            Tensor::from_data(TensorData::new(labels, [n]), device),
        )
    }
}
