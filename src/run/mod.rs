//! The run folder: layout, atomic writes, run.json, metrics.csv, checkpoints.

pub mod checkpoint;
pub mod folder;
pub mod metrics_log;
pub mod record;
pub mod tensorboard;

use std::io::Write;
use std::path::Path;

pub use folder::RunDir;
pub use metrics_log::{MetricRow, MetricsLog, Score, TRAIN_STEP, TrainingPosition};
pub use record::{RunRecord, RunStatus};

/// Writes `bytes` to `path` durably and atomically, for every file pipe keeps (run files,
/// weights, resume points): a temporary file in the same folder is written, synced, renamed over
/// `path` and the folder synced, so a reader or a crash (power loss included) sees the old file
/// or the new one, never a torn one. A failure before the rename removes the temporary file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut file = shared_temp_file(dir).map_err(named)?;
    file.write_all(bytes).map_err(named)?;
    file.as_file().sync_all().map_err(named)?;
    file.persist(path).map_err(|e| named(e.error))?;
    sync_dir(dir).map_err(named)
}

/// A temporary file in `dir` that becomes readable as the user's umask says once renamed:
/// tempfile's default mode is 0600, which would keep teammates on shared storage out of run
/// folders that `File::create` (0666 less the umask) would have let them read.
pub fn shared_temp_file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// Gives the (already durable) file `src` a second name `dst`, atomically and durably, without
/// copying its bytes: a hard link under a temporary name, renamed over `dst`. Where the file
/// system has no hard links, `dst` gets a durable copy instead.
pub fn durable_link(src: &Path, dst: &Path) -> std::io::Result<()> {
    let named = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("linking {} to {}: {e}", src.display(), dst.display()),
        )
    };
    let dir = match dst.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A unique name: tempfile picks it (and removes that placeholder) so that a stale
    // temporary left by a killed process cannot collide.
    let tmp = tempfile::Builder::new()
        .prefix(".link-")
        .tempfile_in(dir)
        .map_err(named)?
        .into_temp_path();
    let tmp_path = tmp.to_path_buf();
    tmp.close().map_err(named)?;
    match std::fs::hard_link(src, &tmp_path) {
        Ok(()) => {
            if let Err(e) = std::fs::rename(&tmp_path, dst) {
                let _ = std::fs::remove_file(&tmp_path);
                return Err(named(e));
            }
            sync_dir(dir).map_err(named)
        }
        Err(_) => atomic_write(dst, &std::fs::read(src).map_err(named)?),
    }
}

/// Makes a rename in `dir` durable: the new directory entry is on disk once this returns.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Directories cannot be opened as files here; the rename is as durable as the platform makes it.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::atomic_write;

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        atomic_write(&path, b"first").unwrap();
        atomic_write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["run.json"]);
    }

    #[test]
    fn durable_link_gives_a_second_name_that_survives_replacing_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        atomic_write(&a, b"old").unwrap();
        super::durable_link(&a, &b).unwrap();
        atomic_write(&a, b"new").unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"old");
        assert_eq!(std::fs::read(&a).unwrap(), b"new");
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }

    /// Under the usual 022 umask a written file is readable by group and others (0644), as
    /// `File::create` would make it; tempfile alone gives 0600.
    #[cfg(unix)]
    #[test]
    fn atomic_write_leaves_files_readable_as_the_umask_allows() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (written, created) = (dir.path().join("run.json"), dir.path().join("plain"));
        atomic_write(&written, b"{}").unwrap();
        std::fs::write(&created, b"{}").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&written), mode(&created), "{:o}", mode(&written));
    }

    #[test]
    fn atomic_write_names_the_file_it_could_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder/run.json");
        let err = atomic_write(&path, b"x").unwrap_err().to_string();
        assert!(
            err.starts_with("writing ") && err.contains("missing-folder/run.json"),
            "{err}"
        );
    }
}
