//! Where a sweep's trial processes run: on this machine ([`Local`], child processes) or on
//! Slurm ([`Slurm`], one `sbatch` job per process, watched with `squeue` and `scontrol`). The
//! sweep's loop (and ASHA's decisions) are the same for both: it starts processes while slots
//! are free and learns how each ended.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use super::shell_quote;

/// How a trial process ended: its exit code, or the signal that killed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Killed(i32),
}

impl Ending {
    pub fn of(status: std::process::ExitStatus) -> Self {
        #[cfg(unix)]
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            return Ending::Killed(signal);
        }
        // Without a code or a signal (not on unix), nothing says it succeeded.
        Ending::Exited(status.code().unwrap_or(1))
    }

    /// The signal's name (`SIGKILL`), for a process that a signal ended.
    pub fn signal_name(&self) -> Option<String> {
        let Ending::Killed(n) = self else {
            return None;
        };
        let name = match *n {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGILL => "SIGILL",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGTERM => "SIGTERM",
            libc::SIGXCPU => "SIGXCPU",
            _ => return Some(format!("signal {n}")),
        };
        Some(name.to_string())
    }
}

/// One trial process: `pipe` with `args`, its output into `log` (appended to when `append`).
#[derive(Clone, Debug)]
pub struct TrialProcess {
    pub args: Vec<String>,
    pub log: PathBuf,
    pub append: bool,
}

/// Runs trial processes and reports how they end.
pub trait Executor {
    /// Starts trial `trial`'s process; returns the Slurm job id where there is one.
    fn start(&mut self, trial: usize, process: &TrialProcess) -> Result<Option<String>>;
    /// The trials whose process ended since the last call, and how.
    fn poll(&mut self) -> Result<Vec<(usize, Ending)>>;
    /// Processes not yet ended.
    fn running(&self) -> usize;
    /// A Ctrl-C at the sweep: local trials are interrupted (each checkpoints and exits);
    /// Slurm jobs keep running, for `pipe sweep --resume` to watch. Returns whether the
    /// sweep should still wait for its processes.
    fn interrupt(&mut self) -> bool;
    /// How long to wait between polls.
    fn poll_interval(&self) -> std::time::Duration;
    /// The Slurm executor, to watch jobs submitted before (a resumed sweep).
    fn as_slurm(&mut self) -> Option<&mut Slurm> {
        None
    }
}

/// Child processes of this one, each leading its own process group.
pub struct Local {
    pub binary: PathBuf,
    children: BTreeMap<usize, Child>,
}

impl Local {
    pub fn new(binary: PathBuf) -> Self {
        Local {
            binary,
            children: BTreeMap::new(),
        }
    }
}

/// The log file, created (or appended to).
fn open_log(process: &TrialProcess) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    match process.append {
        true => options.append(true).create(true),
        false => options.write(true).create(true).truncate(true),
    };
    options
        .open(&process.log)
        .with_context(|| format!("opening {}", process.log.display()))
}

impl Executor for Local {
    fn start(&mut self, trial: usize, process: &TrialProcess) -> Result<Option<String>> {
        let log = open_log(process)?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(&process.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Each trial leads its own process group: a Ctrl-C at the terminal reaches only the
        // sweep, which then interrupts each trial exactly once (a second interrupt would make a
        // trial exit at once).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.children.insert(trial, cmd.spawn()?);
        Ok(None)
    }

    fn poll(&mut self) -> Result<Vec<(usize, Ending)>> {
        let mut ended = Vec::new();
        for (&k, child) in self.children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                ended.push((k, Ending::of(status)));
            }
        }
        for (k, _) in &ended {
            self.children.remove(k);
        }
        Ok(ended)
    }

    fn running(&self) -> usize {
        self.children.len()
    }

    fn interrupt(&mut self) -> bool {
        for child in self.children.values() {
            interrupt_group(child);
        }
        true
    }

    fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(100)
    }
}

/// SIGINT to a trial's process group, so the trial and anything it started get the interrupt
/// a terminal would have sent them.
#[cfg(unix)]
fn interrupt_group(child: &Child) {
    if let Ok(group) = libc::pid_t::try_from(child.id()) {
        // SAFETY: killpg only sends a signal; `group` is a process group this sweep created.
        // A trial that already exited makes it fail with ESRCH, which is harmless here.
        unsafe { libc::killpg(group, libc::SIGINT) };
    }
}

/// No process groups to signal here: the trial shares the console and gets its Ctrl-C directly.
#[cfg(not(unix))]
fn interrupt_group(child: &Child) {
    let _ = child;
}

/// Slurm: each process is one `sbatch` job, watched until `squeue` no longer lists it; then
/// `scontrol show job` says how it ended (or, once Slurm has forgotten the job, the trial's
/// run.json, through `ended_from_run`).
pub struct Slurm {
    pub binary: PathBuf,
    /// The folder jobs run in (`--chdir`): where the sweep ran, so the spec's paths resolve.
    pub workdir: PathBuf,
    /// Extra `sbatch` options (`--partition=gpu`, `--time=1:00:00`).
    pub options: Vec<String>,
    /// Job names: `<name>-<trial>`.
    pub name: String,
    /// Each trial's job now in Slurm.
    jobs: BTreeMap<usize, String>,
    /// How a trial whose job Slurm no longer knows ended, from its run folder.
    ended_from_run: Box<dyn Fn(usize) -> Ending>,
}

impl Slurm {
    pub fn new(
        binary: PathBuf,
        workdir: PathBuf,
        options: Vec<String>,
        name: String,
        ended_from_run: Box<dyn Fn(usize) -> Ending>,
    ) -> Self {
        Slurm {
            binary,
            workdir,
            options,
            name,
            jobs: BTreeMap::new(),
            ended_from_run,
        }
    }

    /// Watches trial `trial`'s job `job`, submitted before (a resumed controller).
    pub fn attach(&mut self, trial: usize, job: String) {
        self.jobs.insert(trial, job);
    }

    /// The jobs not yet ended by `squeue`'s account (pending, running, completing, ...).
    /// Jobs it lists as ended, and jobs it has forgotten, are not among them.
    fn queued(&self) -> Result<Vec<String>> {
        let ids: Vec<&str> = self.jobs.values().map(String::as_str).collect();
        let out = Command::new("squeue")
            .args(["--noheader", "--format=%i %T", "--states=all"])
            .arg(format!("--jobs={}", ids.join(",")))
            .output()
            .context("running squeue")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            // Jobs Slurm has already forgotten make squeue fail with this; anything else
            // (the controller unreachable) says nothing about the jobs.
            if err.contains("Invalid job id") {
                return Ok(Vec::new());
            }
            bail!("squeue: {}", err.trim());
        }
        let ended = [
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
        ];
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let (id, state) = (parts.next()?, parts.next().unwrap_or(""));
                (!ended.contains(&state)).then(|| id.to_string())
            })
            .collect())
    }

    /// How job `job` ended, by `scontrol show job`: `None` where Slurm no longer knows it.
    fn job_ending(job: &str) -> Option<Ending> {
        let out = Command::new("scontrol")
            .args(["show", "job", "--oneliner", job])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_string)
        };
        let state = field("JobState=")?;
        let (code, signal) = field("ExitCode=")?
            .split_once(':')
            .map(|(c, s)| (c.parse::<i32>().unwrap_or(1), s.parse::<i32>().unwrap_or(0)))?;
        Some(match state.as_str() {
            _ if signal > 0 => Ending::Killed(signal),
            "COMPLETED" | "FAILED" => Ending::Exited(code),
            // Cancelled, timed out, out of memory, node failure: ended from outside.
            "OUT_OF_MEMORY" => Ending::Killed(libc::SIGKILL),
            _ if code != 0 => Ending::Exited(code),
            _ => Ending::Killed(libc::SIGTERM),
        })
    }
}

impl Executor for Slurm {
    fn start(&mut self, trial: usize, process: &TrialProcess) -> Result<Option<String>> {
        // The job appends to the log, so a promotion continues its trial's log.
        if !process.append {
            std::fs::write(&process.log, b"")
                .with_context(|| format!("creating {}", process.log.display()))?;
        }
        let command: Vec<String> = std::iter::once(self.binary.display().to_string())
            .chain(process.args.iter().cloned())
            .map(|a| shell_quote(&a))
            .collect();
        let out = Command::new("sbatch")
            .arg("--parsable")
            .arg(format!("--job-name={}-{trial}", self.name))
            .arg(format!("--output={}", process.log.display()))
            .arg("--open-mode=append")
            .arg(format!("--chdir={}", self.workdir.display()))
            .args(&self.options)
            .arg(format!("--wrap=exec {}", command.join(" ")))
            .output()
            .context("running sbatch (is Slurm installed here?)")?;
        if !out.status.success() {
            bail!(
                "sbatch refused trial {trial}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let job = stdout
            .trim()
            .split(';')
            .next()
            .filter(|id| !id.is_empty())
            .with_context(|| format!("sbatch printed no job id for trial {trial}"))?
            .to_string();
        self.jobs.insert(trial, job.clone());
        Ok(Some(job))
    }

    fn poll(&mut self) -> Result<Vec<(usize, Ending)>> {
        if self.jobs.is_empty() {
            return Ok(Vec::new());
        }
        let queued = match self.queued() {
            Ok(q) => q,
            Err(e) => {
                // The controller may be busy or restarting: the jobs are still where they were.
                errln!("warning: {e:#}; trying again");
                return Ok(Vec::new());
            }
        };
        let gone: Vec<(usize, String)> = (self.jobs.iter())
            .filter(|(_, job)| !queued.contains(job))
            .map(|(&k, job)| (k, job.clone()))
            .collect();
        let mut ended = Vec::new();
        for (k, job) in gone {
            self.jobs.remove(&k);
            let ending = Self::job_ending(&job).unwrap_or_else(|| (self.ended_from_run)(k));
            ended.push((k, ending));
        }
        Ok(ended)
    }

    fn running(&self) -> usize {
        self.jobs.len()
    }

    fn interrupt(&mut self) -> bool {
        false
    }

    fn as_slurm(&mut self) -> Option<&mut Slurm> {
        Some(self)
    }

    fn poll_interval(&self) -> std::time::Duration {
        let ms = std::env::var("PIPE_SLURM_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        std::time::Duration::from_millis(ms)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    #[test]
    fn a_process_killed_by_a_signal_says_which() {
        // Raw wait statuses: a signal number alone, or the exit code shifted by 8.
        let killed = Ending::of(ExitStatus::from_raw(libc::SIGKILL));
        assert_eq!(killed, Ending::Killed(libc::SIGKILL));
        assert_eq!(killed.signal_name().as_deref(), Some("SIGKILL"));
        assert_eq!(
            Ending::of(ExitStatus::from_raw(130 << 8)),
            Ending::Exited(130)
        );
        assert_eq!(Ending::Exited(130).signal_name(), None);
    }

    #[test]
    fn arguments_reach_the_job_quoted() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
