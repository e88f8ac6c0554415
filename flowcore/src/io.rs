//! Files written so that a crash never leaves half of one under the real name: checkpoints,
//! reports, configs, tracking metadata and every other file the applications write.

use std::path::{Path, PathBuf};

use crate::{FlowError, Result};

/// Write `bytes` to a temporary file beside `path`, flush it to disk, then rename it over
/// `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |source| FlowError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Remove, under `dir` and its subfolders, the temporary files that [`write_atomic`] left when
/// its process was killed mid-write (`NAME.tmp.PID`). Returns how many it removed. Call it only
/// while no other process writes under `dir` (a resumed run holds its folder's lock).
pub fn remove_temporaries(dir: &Path) -> Result<usize> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FlowError::Io { path, source }
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io(&path))?.is_dir() {
            removed += remove_temporaries(&path)?;
        } else if is_temporary(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(&path).map_err(io(&path))?;
            tracing::info!(path = %path.display(), "removed what a killed write left");
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether a file name is one of [`write_atomic`]'s temporary names.
fn is_temporary(name: &str) -> bool {
    name.rsplit_once(".tmp.").is_some_and(|(stem, pid)| {
        !stem.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_temporaries_of_killed_writes_are_removed() {
        let dir = std::env::temp_dir().join(format!("flowcore-io-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        write_atomic(&dir.join("kept.json"), b"{}").unwrap();
        let left = ["report.json.tmp.4194303", "sub/model.safetensors.tmp.12"];
        let kept = ["kept.json", "notes.tmp.txt", "sub/.tmp.1", "sub/a.tmp.12x"];
        for name in left.iter().chain(&kept[1..]) {
            std::fs::write(dir.join(name), b"partial").unwrap();
        }
        assert_eq!(remove_temporaries(&dir).unwrap(), left.len());
        for name in left {
            assert!(!dir.join(name).exists(), "{name} was left");
        }
        for name in kept {
            assert!(dir.join(name).exists(), "{name} was removed");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
