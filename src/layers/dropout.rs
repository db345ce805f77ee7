//! `dropout`: active only while training (burn applies it on autodiff backends only).

use burn::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fused;

use super::{ForwardCtx, InferCtx, LayerDef, LayerForward, TensorSpec, Value, rate};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropoutConfig {
    /// Fraction of units dropped.
    pub rate: f64,
}

#[derive(Module, Clone, Debug)]
pub struct Dropout {
    inner: burn::nn::Dropout,
}

impl LayerDef for DropoutConfig {
    type Module<B: Backend> = Dropout;

    fn validate(&self) -> Result<(), String> {
        rate(self.rate, "rate")
    }
    fn infer(
        &self,
        inputs: &[TensorSpec],
        _: &InferCtx,
    ) -> Result<Vec<(String, TensorSpec)>, String> {
        Ok(vec![("output".into(), inputs[0].clone())])
    }
    fn param_count(&self, _: &[TensorSpec], _: &InferCtx) -> usize {
        0
    }
    fn init<B: Backend>(
        &self,
        _: &[TensorSpec],
        _: &InferCtx,
        _: &B::Device,
    ) -> Result<Dropout, String> {
        Ok(Dropout {
            inner: burn::nn::DropoutConfig::new(self.rate).init(),
        })
    }
}

impl<B: Backend> LayerForward<B> for Dropout {
    fn forward(&self, inputs: Vec<Value<B>>, _: &ForwardCtx<B>) -> Vec<Value<B>> {
        let x = inputs.into_iter().next().expect("one input");
        let p = self.inner.prob;
        vec![x.map_float(|t| fused::dropout(t, p), |t| fused::dropout(t, p))]
    }
}
