//! Encoded splits and the tensors of one batch.

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::layers::ForwardCtx;
use crate::vectorize::{Encoded, Vectorizer};

use super::Example;

/// One batch of model inputs.
#[derive(Clone, Debug)]
pub struct Inputs<B: Backend> {
    pub ids: Tensor<B, 2, Int>,
    pub mask: Tensor<B, 2>,
    pub token_type_ids: Tensor<B, 2, Int>,
}

impl<B: Backend> Inputs<B> {
    pub fn to_device(self, device: &B::Device) -> Self {
        Inputs {
            ids: self.ids.to_device(device),
            mask: self.mask.to_device(device),
            token_type_ids: self.token_type_ids.to_device(device),
        }
    }

    /// What every layer may read besides its own inputs.
    pub fn ctx(&self) -> ForwardCtx<B> {
        ForwardCtx {
            mask: self.mask.clone(),
            token_type_ids: self.token_type_ids.clone(),
        }
    }
}

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

/// A split uploaded to the device once; a batch is an index upload and row gathers on the
/// device (what keeps a GPU fed without copying every batch from the host).
pub struct DeviceSplit<B: Backend> {
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    token_type_ids: Tensor<B, 2, Int>,
    labels: Tensor<B, 1, Int>,
    lengths: Vec<usize>,
    dynamic: bool,
    device: B::Device,
}

impl<B: Backend> DeviceSplit<B> {
    pub fn new(split: &EncodedSplit, device: &B::Device) -> Self {
        let (n, len) = (split.len(), split.enc.len);
        DeviceSplit {
            ids: Tensor::from_data(TensorData::new(split.enc.ids.clone(), [n, len]), device),
            mask: Tensor::from_data(TensorData::new(split.enc.mask.clone(), [n, len]), device),
            token_type_ids: Tensor::from_data(
                TensorData::new(split.enc.token_type_ids.clone(), [n, len]),
                device,
            ),
            labels: Tensor::from_data(TensorData::new(split.labels.clone(), [n]), device),
            lengths: split.enc.lengths.clone(),
            dynamic: split.enc.dynamic,
            device: device.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Batches are cut to their longest row.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// Real tokens of row `r`.
    pub fn length(&self, r: usize) -> usize {
        self.lengths[r]
    }

    /// The same tensors as [`EncodedSplit::batch`] for `rows`.
    pub fn batch(&self, rows: &[usize]) -> (Inputs<B>, Tensor<B, 1, Int>) {
        let n = rows.len();
        let index: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [n]), &self.device);
        let [_, full] = self.ids.dims();
        let len = if self.dynamic {
            rows.iter()
                .map(|&r| self.lengths[r])
                .max()
                .unwrap_or(1)
                .max(1)
        } else {
            full
        };
        let take = |t: Tensor<B, 2, Int>| t.select(0, index.clone()).slice([0..n, 0..len]);
        (
            Inputs {
                ids: take(self.ids.clone()),
                mask: self
                    .mask
                    .clone()
                    .select(0, index.clone())
                    .slice([0..n, 0..len]),
                token_type_ids: take(self.token_type_ids.clone()),
            },
            self.labels.clone().select(0, index),
        )
    }
}
