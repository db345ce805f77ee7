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
    let bytes = serialise(module, path)?;
    atomic_write(path, &bytes)?;
    Ok(())
}

/// Saves `module` to `path` as [`save`] does, except that where one of `twins` already holds
/// exactly these bytes, `path` becomes a second name of that file (a hard link) instead of a
/// second copy: a run's final weights are most often its last stage's newest or best
/// checkpoint, and for a pretrained encoder each copy is hundreds of megabytes.
pub fn save_or_link<B: Backend, M: Module<B>>(
    module: &M,
    path: &Path,
    twins: &[std::path::PathBuf],
) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes = serialise(module, path)?;
    for twin in twins {
        let same_size = std::fs::metadata(twin).is_ok_and(|m| m.len() == bytes.len() as u64);
        if same_size && std::fs::read(twin).is_ok_and(|held| same_weights(&held, &bytes)) {
            return Ok(super::durable_link(twin, path)?);
        }
    }
    atomic_write(path, &bytes)?;
    Ok(())
}

/// Whether two safetensors files hold the same tensors: the same data bytes and headers that
/// are equal as JSON (burn writes the header's metadata map in a random order).
fn same_weights(a: &[u8], b: &[u8]) -> bool {
    let split = |file: &[u8]| -> Option<(serde_json::Value, usize)> {
        let n = u64::from_le_bytes(file.get(..8)?.try_into().ok()?) as usize;
        let header = serde_json::from_slice(file.get(8..8usize.checked_add(n)?)?).ok()?;
        Some((header, 8 + n))
    };
    match (split(a), split(b)) {
        (Some((ha, da)), Some((hb, db))) => ha == hb && a[da..] == b[db..],
        _ => false,
    }
}

fn serialise<B: Backend, M: Module<B>>(module: &M, path: &Path) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None);
    module
        .save_into(&mut store)
        .map_err(|e| anyhow!("serialising the weights for {}: {e}", path.display()))?;
    store
        .get_bytes()
        .map_err(|e| anyhow!("serialising the weights for {}: {e}", path.display()))
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

#[cfg(test)]
mod tests {
    use super::same_weights;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn weights_are_the_same_whatever_the_order_of_the_header_keys() {
        let a = file(
            r#"{"__metadata__":{"a":"1","b":"2"},"w":{"dtype":"F32"}}"#,
            &[1, 2],
        );
        let b = file(
            r#"{"w":{"dtype":"F32"},"__metadata__":{"b":"2","a":"1"}}"#,
            &[1, 2],
        );
        assert!(same_weights(&a, &b));
        let other_data = file(
            r#"{"w":{"dtype":"F32"},"__metadata__":{"b":"2","a":"1"}}"#,
            &[1, 3],
        );
        assert!(!same_weights(&a, &other_data));
        let other_header = file(
            r#"{"w":{"dtype":"F16"},"__metadata__":{"b":"2","a":"1"}}"#,
            &[1, 2],
        );
        assert!(!same_weights(&a, &other_header));
        assert!(!same_weights(&a, &a[..5]), "a truncated file is not a twin");
    }
}
