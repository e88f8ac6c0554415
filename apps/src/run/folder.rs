//! A run folder and who may write it: a new folder, a named one that must be empty, or the run
//! to resume, which must be this application's and have a checkpoint; a lock that keeps a
//! second process out while one writes it; and `run.json`, which says whose run it is and which
//! tracking run it continues.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flowcore::io::write_atomic;
use flowcore::train::CheckpointDir;
use serde::{Deserialize, Serialize};

use super::{AppInfo, TrainOptions};

/// What a run folder says of itself, in `run.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunFile {
    /// The application that wrote it.
    pub app: String,
    /// Its tracking run in the local store (`mlruns/<experiment>/<run>`).
    pub tracking_run: Option<PathBuf>,
    /// The tracking server and the run there, when there was one.
    pub remote: Option<(String, String)>,
}

impl RunFile {
    /// The name of the file in a run folder.
    pub const NAME: &'static str = "run.json";

    /// The file of the run in `dir`, if it has one (runs from before it do not).
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(Self::NAME);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{} is not a run file", path.display())
        })?))
    }

    /// Write it into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(Self::NAME),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        Ok(())
    }
}

/// The folder of a run, held by this process until it is dropped.
#[derive(Debug)]
pub struct RunFolder {
    /// The folder.
    pub dir: PathBuf,
    /// The run being resumed, as its folder describes it.
    pub resumed: Option<RunFile>,
    lock: PathBuf,
}

impl RunFolder {
    /// The folder `opts` asks for (`--resume`, `--run-dir`, or a new one under `output_dir`
    /// named `name-<timestamp>`), checked and locked before anything is written into it.
    pub fn open(opts: &TrainOptions, app: &AppInfo, output_dir: &Path, name: &str) -> Result<Self> {
        let (dir, resumed) = match (&opts.resume, &opts.run_dir) {
            (Some(dir), _) => {
                let file = check_resumable(dir, app)?;
                if CheckpointDir::new(dir.join("checkpoints"))
                    .latest()
                    .is_none()
                {
                    tracing::warn!(
                        "--resume {}: the run stopped before its first checkpoint; training it \
                         from the start",
                        dir.display()
                    );
                }
                (dir.clone(), Some(file))
            }
            (None, Some(dir)) => {
                let taken =
                    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
                if taken {
                    bail!(
                        "--run-dir {}: the folder is not empty (it holds another run?); continue \
                         a run with --resume {0}, or choose an empty or new folder",
                        dir.display()
                    );
                }
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create run directory {}", dir.display()))?;
                (dir.clone(), None)
            }
            (None, None) => (super::place::new_run_dir(output_dir, name)?, None),
        };
        let lock = take_lock(&dir)?;
        if resumed.is_some() {
            // The run's own files a kill left half-written (checkpoints clear theirs when the
            // engine resumes): with the lock held, nothing else writes them.
            flowcore::io::remove_temporaries(&dir)?;
        }
        Ok(Self { dir, resumed, lock })
    }
}

impl Drop for RunFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// A run to resume: a folder of this application's with a checkpoint. Returns what its
/// `run.json` says (an empty description for runs from before the file).
pub(crate) fn check_resumable(dir: &Path, app: &AppInfo) -> Result<RunFile> {
    if !dir.join("config.toml").exists() {
        bail!(
            "--resume {}: no config.toml there: is it a run directory?",
            dir.display()
        );
    }
    let file = RunFile::read(dir)?.unwrap_or_default();
    if !file.app.is_empty() && file.app != app.name {
        bail!(
            "--resume {}: it is a run of {}, not of {}",
            dir.display(),
            file.app,
            app.name
        );
    }
    if CheckpointDir::new(dir.join("checkpoints"))
        .latest()
        .is_none()
    {
        // Killed before its first checkpoint, a run has nothing to lose: it starts over. One
        // that finished and lost its checkpoints would be overwritten.
        if dir.join("model.safetensors").exists() {
            bail!(
                "--resume {}: it has no checkpoint to continue from (they were removed); train \
                 anew in another folder",
                dir.display()
            );
        }
    }
    Ok(file)
}

/// This machine's name, which a lock records beside the process id: a process of another
/// machine (a shared file system) cannot be looked up, so its lock is respected.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// The process holding the lock file `lock`, when one still runs: `(pid, host)`.
fn live_holder(lock: &Path) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(lock).ok()?;
    let mut words = text.split_whitespace();
    let pid: u32 = words.next()?.parse().ok()?;
    let holder_host = words.next().unwrap_or_default().to_string();
    let here = holder_host.is_empty() || holder_host == host();
    let alive = !here || runs(pid);
    alive.then_some((pid, holder_host))
}

/// Whether process `pid` of this machine runs: it exists and is not a zombie (dead, not yet
/// reaped by its parent; in a container without an init, never).
fn runs(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| !matches!(state, "Z" | "X")),
        Err(_) => false,
    }
}

/// Whether a process (this one included) still writes the run folder `dir`: holds its lock.
pub fn is_held(dir: &Path) -> bool {
    live_holder(&dir.join(".lock")).is_some()
}

/// The lock file of a run folder: created only if absent, holding this process's id and
/// machine. A lock left by a process of this machine that no longer runs (killed) is taken over.
fn take_lock(dir: &Path) -> Result<PathBuf> {
    let lock = dir.join(".lock");
    let me = std::process::id();
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(mut file) => {
                std::io::Write::write_all(&mut file, format!("{me} {}", host()).as_bytes())
                    .with_context(|| format!("cannot write {}", lock.display()))?;
                return Ok(lock);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match live_holder(&lock) {
                Some((pid, holder_host)) if pid != me || holder_host != host() => bail!(
                    "{}: process {pid} on {holder_host} is writing this run; wait for it to \
                         end (if no such process runs, remove {})",
                    dir.display(),
                    lock.display()
                ),
                _ => {
                    tracing::warn!(
                        "{}: taking over the lock of a process that no longer runs",
                        dir.display(),
                    );
                    std::fs::remove_file(&lock)
                        .with_context(|| format!("cannot remove {}", lock.display()))?;
                }
            },
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", lock.display()));
            }
        }
    }
    bail!("{}: cannot take the lock {}", dir.display(), lock.display())
}
