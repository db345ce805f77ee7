//! Model weights as safetensors (readable by PyTorch / HF tools), written durably through
//! [`atomic_write`].

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use super::atomic_write;

pub fn save<B: Backend, M: Module<B>>(module: &M, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Serialised in memory, then written by the one durable writer all run files share.
    let mut store = SafetensorsStore::from_bytes(None);
    module
        .save_into(&mut store)
        .map_err(|e| anyhow!("serialising the weights for {}: {e}", path.display()))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| anyhow!("serialising the weights for {}: {e}", path.display()))?;
    atomic_write(path, &bytes)?;
    Ok(())
}

pub fn load<B: Backend, M: Module<B>>(mut module: M, path: &Path) -> Result<M> {
    let mut store = SafetensorsStore::from_file(path);
    let result = module
        .load_from(&mut store)
        .map_err(|e| anyhow!("loading {}: {e}", path.display()))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        return Err(anyhow!(
            "{}: weights do not fit the model (missing: {:?}, errors: {:?})",
            path.display(),
            result.missing,
            result.errors
        ));
    }
    Ok(in_device_float_dtype(module))
}

/// Every float parameter in its device's float dtype (the run's precision). burn-store keeps
/// the dtype a tensor has in the file (f32 for pipe's checkpoints and Hugging Face's BERT), so
/// a half-precision model loaded from one would otherwise compute in f32 and half at once.
pub fn in_device_float_dtype<B: Backend, M: Module<B>>(module: M) -> M {
    module.map(&mut DeviceFloatDType)
}

struct DeviceFloatDType;

impl<B: Backend> ModuleMapper<B> for DeviceFloatDType {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let wanted = burn::tensor::get_device_settings::<B>(&tensor.device()).float_dtype;
        let tensor = match tensor.dtype() == wanted.into() {
            true => tensor,
            false => {
                // Through host memory rather than `cast`, which under autodiff would make the
                // parameter a node of a graph instead of a leaf.
                let (trainable, device) = (tensor.is_require_grad(), tensor.device());
                Tensor::from_data(tensor.into_data(), &device).set_require_grad(trainable)
            }
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}
