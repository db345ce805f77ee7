//! Model weights as safetensors (readable by PyTorch / HF tools), written durably through
//! [`atomic_write`].

use std::path::Path;

use anyhow::{Context, Result, anyhow};
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
    Ok(module)
}
