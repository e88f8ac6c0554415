//! Listing and decoding images: the class folders of a root on disk, in S3 or embedded, decoded
//! on worker threads (rayon) and resized to the configured size; unreadable images skipped
//! with their reason, or the first one an error.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rayon::prelude::*;

use super::{EmbeddedSet, ImageRoot, ImageSet, ImageSpec, OnBadImage};
use crate::DataError;
use crate::s3::{S3Config, S3Location};
fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e))
}

/// `(path, class)` of the images under `dir`: in `dir/<class>/`, or directly in `dir` (class
/// = the folder's own name).
fn list_disk(dir: &Path) -> Result<Vec<(PathBuf, String)>, DataError> {
    let io = |path: &Path, source| DataError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|e| io(&path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image(&p.to_string_lossy()))
                .collect();
            files.sort();
            out.extend(files.into_iter().map(|f| (f, name.clone())));
        } else if is_image(&name) {
            let class = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            out.push((path, class));
        }
    }
    Ok(out)
}

/// Decode one image to `C x H x W` bytes of `spec`, resizing when needed.
pub fn decode(bytes: &[u8], spec: ImageSpec) -> Result<Vec<u8>, String> {
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let (w, h) = (spec.width as u32, spec.height as u32);
    let resize = |img: image::DynamicImage| {
        if img.width() == w && img.height() == h {
            img
        } else {
            img.resize_exact(w, h, FilterType::Triangle)
        }
    };
    Ok(match spec.channels {
        1 => resize(img).to_luma8().into_raw(),
        3 => {
            let rgb = resize(img).to_rgb8();
            let hw = spec.height * spec.width;
            let mut chw = vec![0u8; 3 * hw];
            for (i, px) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    chw[c * hw + i] = px[c];
                }
            }
            chw
        }
        c => {
            return Err(format!(
                "{c} channels: only 1 (grey) and 3 (RGB) are supported"
            ));
        }
    })
}

/// `(key, class)` of the images under `location`: in `<class>/`, or directly in it (class =
/// the last part of the prefix).
fn list_s3(location: &S3Location, config: &S3Config) -> Result<Vec<(String, String)>, DataError> {
    let keys = crate::s3::list(location, config)?;
    let base = if location.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", location.prefix)
    };
    let own = location.prefix.rsplit('/').next().unwrap_or("").to_string();
    Ok(keys
        .into_iter()
        .filter(|k| is_image(k))
        .filter_map(|k| {
            let rest = k.strip_prefix(&base)?.to_string();
            let class = match rest.split('/').collect::<Vec<_>>().as_slice() {
                [_file] => own.clone(),
                [class, _file] => class.to_string(),
                _ => return None,
            };
            Some((k, class))
        })
        .collect())
}

/// Load every image under an S3 prefix (`<class>/` folders or images directly).
pub fn load_s3(
    location: &S3Location,
    config: &S3Config,
    spec: ImageSpec,
    on_bad: OnBadImage,
) -> Result<ImageSet, DataError> {
    let listed = list_s3(location, config)?;
    if listed.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no images (expected <class>/*.png or .jpg, or images directly in it)",
            location.url()
        )));
    }
    let keys: Vec<String> = listed.iter().map(|(k, _)| k.clone()).collect();
    let fetched = crate::s3::fetch(&location.bucket, &keys, config)?;
    let files = listed
        .into_iter()
        .zip(fetched)
        .map(|((key, class), bytes)| {
            let url = format!("s3://{}/{key}", location.bucket);
            (url, class, Source::Fetched(bytes))
        })
        .collect();
    decode_all(files, spec, on_bad, &location.url())
}

/// Load every image of `split` (`train`, `val`) under `root`.
pub fn load_split(
    root: &ImageRoot,
    split: &str,
    spec: ImageSpec,
    on_bad: OnBadImage,
) -> Result<ImageSet, DataError> {
    match root {
        ImageRoot::S3(location, config) => {
            let sub = location.join(split);
            match load_s3(&sub, config, spec, on_bad) {
                Err(DataError::Invalid(m)) if m.ends_with("or images directly in it)") => {
                    Err(DataError::Invalid(format!(
                        "{}: no `{split}/` folder (expected {split}/<class>/*.png or .jpg)",
                        location.url()
                    )))
                }
                other => other,
            }
        }
        ImageRoot::Disk(dir) => {
            let sub = dir.join(split);
            if !sub.is_dir() {
                return Err(DataError::Invalid(format!(
                    "{}: no `{split}/` folder (expected {split}/<class>/*.png or .jpg)",
                    dir.display()
                )));
            }
            load_folder(&sub, spec, on_bad)
        }
        ImageRoot::Embedded(set) => {
            let prefix = format!("{split}/");
            let name = set.root();
            let files: Vec<(String, String, &[u8])> = set
                .files()
                .iter()
                .filter_map(|(path, bytes)| {
                    let rest = path.strip_prefix(&prefix)?;
                    let (class, _) = rest.split_once('/')?;
                    Some((format!("{name}/{path}"), class.to_string(), *bytes))
                })
                .collect();
            if files.is_empty() {
                return Err(DataError::Invalid(format!("{name}: no `{split}/` images")));
            }
            decode_all(
                files
                    .into_iter()
                    .map(|(p, c, b)| (p, c, Source::Memory(b)))
                    .collect(),
                spec,
                on_bad,
                &format!("{name}/{split}"),
            )
        }
    }
}

/// Load every image in `dir/<class>/` (or directly in `dir`).
pub fn load_folder(dir: &Path, spec: ImageSpec, on_bad: OnBadImage) -> Result<ImageSet, DataError> {
    let files = list_disk(dir)?;
    if files.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no images (expected <class>/*.png or .jpg, or images directly in it)",
            dir.display()
        )));
    }
    decode_all(
        files
            .into_iter()
            .map(|(p, c)| (p.display().to_string(), c, Source::File(p)))
            .collect(),
        spec,
        on_bad,
        &dir.display().to_string(),
    )
}

/// Load `split` of `root`, or any folder of images, by name: `embedded:fashion-mnist/val` is
/// the embedded set's `val/` (`embedded:<set>` alone, its `val/`).
pub fn load_any(
    location: &str,
    spec: ImageSpec,
    on_bad: OnBadImage,
) -> Result<ImageSet, DataError> {
    if location == "embedded" || location.starts_with("embedded:") {
        let (name, split) = location.split_once('/').unwrap_or((location, ""));
        let split = split.trim_matches('/');
        let split = if split.is_empty() { "val" } else { split };
        return load_split(
            &ImageRoot::Embedded(EmbeddedSet::parse(name)?),
            split,
            spec,
            on_bad,
        );
    }
    match ImageRoot::parse(location)? {
        ImageRoot::Disk(p) => load_folder(&p, spec, on_bad),
        ImageRoot::Embedded(set) => load_split(&ImageRoot::Embedded(set), "val", spec, on_bad),
        ImageRoot::S3(loc, config) => load_s3(&loc, &config, spec, on_bad),
    }
}

enum Source {
    File(PathBuf),
    Memory(&'static [u8]),
    Fetched(Result<Vec<u8>, String>),
}

fn decode_all(
    files: Vec<(String, String, Source)>,
    spec: ImageSpec,
    on_bad: OnBadImage,
    origin: &str,
) -> Result<ImageSet, DataError> {
    let decoded: Vec<Result<Vec<u8>, String>> = files
        .par_iter()
        .map(|(_, _, src)| {
            let bytes = match src {
                Source::File(p) => std::fs::read(p).map_err(|e| e.to_string())?,
                Source::Memory(b) => b.to_vec(),
                Source::Fetched(r) => r.clone()?,
            };
            decode(&bytes, spec)
        })
        .collect();
    let mut set = ImageSet {
        spec: Some(spec),
        ..Default::default()
    };
    for ((path, class, _), result) in files.into_iter().zip(decoded) {
        match result {
            Ok(px) => {
                set.pixels.extend_from_slice(&px);
                set.paths.push(path);
                set.classes.push(class);
            }
            Err(reason) if on_bad == OnBadImage::Skip => {
                tracing::warn!("{path}: {reason}; skipped");
                set.skipped.push((path, reason));
            }
            Err(reason) => return Err(DataError::Image { path, reason }),
        }
    }
    if set.is_empty() {
        return Err(DataError::Invalid(format!(
            "{origin}: none of its {} images could be read",
            set.skipped.len()
        )));
    }
    Ok(set)
}
