//! The tensors of one batch (cut from encoded rows by [`super::EncodedSplit::batch`]).

use burn::prelude::*;

use crate::layers::ForwardCtx;

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
