//! Freezing layers: a frozen layer's parameters do not require gradients, so it builds no
//! autodiff graph, gets no gradient and no optimizer state.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;

struct RequireGrad(bool);

impl<B: Backend> ModuleMapper<B> for RequireGrad {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.set_require_grad(self.0), mapper)
    }
}

pub fn set_trainable<B: Backend, M: Module<B>>(module: M, trainable: bool) -> M {
    module.map(&mut RequireGrad(trainable))
}
