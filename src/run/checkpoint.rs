//! Model weights as safetensors (readable by PyTorch / HF tools), written atomically.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};

pub fn save<B: Backend, M: Module<B>>(module: &M, path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("weights");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut store = SafetensorsStore::from_file(&tmp).overwrite(true);
    module
        .save_into(&mut store)
        .map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
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
