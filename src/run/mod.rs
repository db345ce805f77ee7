//! The run folder: layout, atomic writes, run.json, metrics.csv, checkpoints.

pub mod checkpoint;
pub mod folder;
pub mod metrics_log;
pub mod record;

use std::io::Write;
use std::path::Path;

pub use folder::RunDir;
pub use metrics_log::{MetricRow, MetricsLog};
pub use record::{RunRecord, RunStatus};

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`, so a
/// reader (or a crash) never sees a half-written file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
