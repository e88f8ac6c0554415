//! Image folders: `ROOT/train/<class>/*` and `ROOT/val/<class>/*`, PNG or JPEG, grey or RGB,
//! decoded on worker threads (rayon) and resized to the configured size. Images are kept as
//! 8-bit `C x H x W`; [`ImageBatches`] draws seeded, augmented, dequantised batches ahead of the
//! training step on its own thread.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use image::imageops::FilterType;
use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::s3::{S3Config, S3Location};
use crate::{DataError, batch_rng};

/// The embedded default image set of application 2 (see `data/default/fashion-mnist/README.md`),
/// as `(path relative to its root, file bytes)`.
pub static EMBEDDED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/embedded_images.rs"));

/// The embedded labelled set of application 3 (see
/// `data/default/fashion-mnist-classes/README.md`).
pub static EMBEDDED_CLASSES: &[(&str, &[u8])] =
    include!(concat!(env!("OUT_DIR"), "/embedded_classes.rs"));

/// The name that selects [`EMBEDDED`] wherever an image root is expected.
pub const EMBEDDED_ROOT: &str = "embedded:fashion-mnist";

/// An image set compiled into the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddedSet {
    /// `embedded:fashion-mnist`: sneakers to learn, sneakers and bags to score.
    FashionMnist,
    /// `embedded:fashion-mnist-classes`: four classes to learn, with a fifth in `val/` only.
    FashionMnistClasses,
}

impl EmbeddedSet {
    /// Every set, for messages.
    pub const ALL: [Self; 2] = [Self::FashionMnist, Self::FashionMnistClasses];

    /// Its root name, `embedded:<set>`.
    pub fn root(self) -> &'static str {
        match self {
            Self::FashionMnist => EMBEDDED_ROOT,
            Self::FashionMnistClasses => "embedded:fashion-mnist-classes",
        }
    }

    /// Its files.
    pub fn files(self) -> &'static [(&'static str, &'static [u8])] {
        match self {
            Self::FashionMnist => EMBEDDED,
            Self::FashionMnistClasses => EMBEDDED_CLASSES,
        }
    }

    /// The set named by `embedded:<set>` (`embedded` alone: application 2's).
    pub fn parse(name: &str) -> Result<Self, DataError> {
        if name == "embedded" {
            return Ok(Self::FashionMnist);
        }
        Self::ALL
            .into_iter()
            .find(|s| s.root() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.root()).collect();
                DataError::Invalid(format!(
                    "unknown embedded image set `{name}`; there are {}",
                    names.join(", ")
                ))
            })
    }
}

/// Where images come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageRoot {
    /// A folder on local disk.
    Disk(PathBuf),
    /// A set compiled into the binary.
    Embedded(EmbeddedSet),
    /// A prefix in an S3 bucket, and how to reach the store.
    S3(S3Location, S3Config),
}

impl ImageRoot {
    /// `embedded:<set>`, `s3://bucket/prefix` (reached as the environment says, see
    /// [`S3Config::from_env`]) or a path.
    pub fn parse(s: &str) -> Result<Self, DataError> {
        if s == "embedded" || s.starts_with("embedded:") {
            return Ok(Self::Embedded(EmbeddedSet::parse(s)?));
        }
        if s.starts_with("s3://") {
            return Ok(Self::S3(S3Location::parse(s)?, S3Config::from_env()));
        }
        Ok(Self::Disk(PathBuf::from(s)))
    }
}

/// Size and colour of decoded images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageSpec {
    /// Values per image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether an image has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What to do with an image that cannot be read or decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadImage {
    /// Report it with its path and go on without it.
    #[default]
    Skip,
    /// Stop with an error naming it.
    Stop,
}

/// Decoded images of one folder tree.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    /// Size of every image.
    pub spec: Option<ImageSpec>,
    /// `n * spec.len()` bytes, image after image, each `C x H x W`.
    pub pixels: Vec<u8>,
    /// Where each image came from.
    pub paths: Vec<String>,
    /// The folder (class) of each image.
    pub classes: Vec<String>,
    /// Images that were skipped, with why.
    pub skipped: Vec<(String, String)>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.spec.map_or(0, |s| s.len());
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The distinct classes, sorted.
    pub fn class_names(&self) -> Vec<String> {
        let mut c = self.classes.clone();
        c.sort();
        c.dedup();
        c
    }
}

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

/// Random augmentation of training images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Rotate by up to this many degrees either way.
    pub rotate_degrees: f64,
    /// Scale by a factor in `[1 - zoom, 1 + zoom]`.
    pub zoom: f64,
}

impl Augment {
    fn is_identity(&self) -> bool {
        !self.flip && self.rotate_degrees == 0.0 && self.zoom == 0.0
    }

    /// Apply to one `C x H x W` image: a random affine map about the centre, bilinear, edges
    /// clamped.
    pub fn apply<R: Rng>(&self, img: &[u8], spec: ImageSpec, rng: &mut R) -> Vec<u8> {
        if self.is_identity() {
            return img.to_vec();
        }
        let flip = self.flip && rng.random::<bool>();
        let angle = if self.rotate_degrees > 0.0 {
            rng.random_range(-self.rotate_degrees..=self.rotate_degrees)
                .to_radians()
        } else {
            0.0
        };
        let scale = if self.zoom > 0.0 {
            rng.random_range(1.0 - self.zoom..=1.0 + self.zoom)
        } else {
            1.0
        };
        let (h, w) = (spec.height, spec.width);
        let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
        let (sin, cos) = angle.sin_cos();
        let mut out = vec![0u8; img.len()];
        for y in 0..h {
            for x in 0..w {
                // The source point of output (x, y): undo scale and rotation, then the flip.
                let (dx, dy) = ((x as f64 - cx) / scale, (y as f64 - cy) / scale);
                let mut sx = cos * dx + sin * dy + cx;
                let sy = -sin * dx + cos * dy + cy;
                if flip {
                    sx = w as f64 - 1.0 - sx;
                }
                let sx = sx.clamp(0.0, w as f64 - 1.0);
                let sy = sy.clamp(0.0, h as f64 - 1.0);
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
                for c in 0..spec.channels {
                    let at = |yy: usize, xx: usize| f64::from(img[c * h * w + yy * w + xx]);
                    let v = at(y0, x0) * (1.0 - fx) * (1.0 - fy)
                        + at(y0, x1) * fx * (1.0 - fy)
                        + at(y1, x0) * (1.0 - fx) * fy
                        + at(y1, x1) * fx * fy;
                    out[c * h * w + y * w + x] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }
}

/// Uniform dequantisation: `(pixel + u) / 256`, `u ~ U[0, 1)`, into `[0, 1)`.
pub fn dequantize<R: Rng>(pixels: &[u8], rng: &mut R, out: &mut Vec<f32>) {
    out.extend(
        pixels
            .iter()
            .map(|&p| ((f64::from(p) + rng.random::<f64>()) / 256.0) as f32),
    );
}

/// Pixels to `[0, 1)` at the centre of each bin, `(pixel + 1/2) / 256`: the deterministic
/// input for scoring and validation.
pub fn to_unit(pixels: &[u8]) -> Vec<f32> {
    pixels
        .iter()
        .map(|&p| ((f64::from(p) + 0.5) / 256.0) as f32)
        .collect()
}

/// A training batch: dequantised pixels and which images of the set they are.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageBatch {
    /// Row-major `[batch, C*H*W]` in `[0, 1)`.
    pub values: Vec<f32>,
    /// The index in the set of each row's image (its class is `set.classes[i]`).
    pub indices: Vec<usize>,
}

/// Batch `step` of `batch_size` images drawn with replacement, augmented and dequantised; a
/// function of `(seed, step)` only.
pub fn train_batch(
    set: &ImageSet,
    augment: &Augment,
    seed: u64,
    step: u64,
    batch_size: usize,
) -> ImageBatch {
    train_rows(set, augment, seed, step, batch_size, 0..batch_size)
}

/// Rows `rows` of [`train_batch`]`(set, augment, seed, step, global)`, making only those: which
/// images is drawn for the whole batch from `(seed, step)` (cheap), each row's augmentation and
/// dequantisation noise from the row's own stream.
pub fn train_rows(
    set: &ImageSet,
    augment: &Augment,
    seed: u64,
    step: u64,
    global: usize,
    rows: std::ops::Range<usize>,
) -> ImageBatch {
    let spec = set.spec.expect("an image set has a spec");
    assert!(rows.end <= global, "rows {rows:?} of a batch of {global}");
    let mut pick = batch_rng(seed, step);
    let chosen: Vec<usize> = (0..global)
        .map(|_| pick.random_range(0..set.len()))
        .collect();
    let mut values = Vec::with_capacity(rows.len() * spec.len());
    let mut indices = Vec::with_capacity(rows.len());
    for row in rows {
        let i = chosen[row];
        let mut rng = crate::row_rng(seed, step, row);
        let img = augment.apply(set.image(i), spec, &mut rng);
        dequantize(&img, &mut rng, &mut values);
        indices.push(i);
    }
    ImageBatch { values, indices }
}

/// Training batches made on a worker thread, `depth` steps ahead of the consumer: whole
/// batches, or one rank's rows of them.
pub struct ImageBatches {
    set: std::sync::Arc<ImageSet>,
    augment: Augment,
    seed: u64,
    global: usize,
    rows: std::ops::Range<usize>,
    depth: usize,
    next: u64,
    rx: Option<Receiver<(u64, ImageBatch)>>,
    worker: Option<JoinHandle<()>>,
}

impl ImageBatches {
    /// Batches of `set`.
    pub fn new(
        set: std::sync::Arc<ImageSet>,
        augment: Augment,
        seed: u64,
        batch_size: usize,
        depth: usize,
    ) -> Self {
        Self {
            set,
            augment,
            seed,
            global: batch_size,
            rows: 0..batch_size,
            depth: depth.max(1),
            next: u64::MAX,
            rx: None,
            worker: None,
        }
    }

    fn start(&mut self, from: u64) {
        self.stop();
        let (tx, rx): (SyncSender<(u64, ImageBatch)>, _) = sync_channel(self.depth);
        let (set, augment, seed) = (self.set.clone(), self.augment, self.seed);
        let (global, rows) = (self.global, self.rows.clone());
        self.worker = Some(std::thread::spawn(move || {
            for step in from.. {
                let batch = train_rows(&set, &augment, seed, step, global, rows.clone());
                if tx.send((step, batch)).is_err() {
                    break;
                }
            }
        }));
        self.rx = Some(rx);
        self.next = from;
    }

    fn stop(&mut self) {
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }

    /// The batch of `step`: from the worker when it is the next one, else the worker restarts
    /// there (after a resume, or when the batch size changed).
    pub fn batch(&mut self, step: u64, batch_size: usize) -> ImageBatch {
        self.rows(step, batch_size, 0..batch_size)
    }

    /// Rows `rows` of the batch of `step` of `global` images (see [`train_rows`]).
    pub fn rows(&mut self, step: u64, global: usize, rows: std::ops::Range<usize>) -> ImageBatch {
        if global != self.global || rows != self.rows {
            (self.global, self.rows) = (global, rows);
            self.next = u64::MAX;
        }
        if step != self.next || self.rx.is_none() {
            self.start(step);
        }
        let received = self.rx.as_ref().and_then(|rx| rx.recv().ok());
        match received {
            Some((s, batch)) if s == step => {
                self.next = step + 1;
                batch
            }
            _ => {
                self.next = u64::MAX;
                let rows = self.rows.clone();
                train_rows(&self.set, &self.augment, self.seed, step, global, rows)
            }
        }
    }
}

impl Drop for ImageBatches {
    fn drop(&mut self) {
        self.stop();
    }
}

fn to_dynamic(img: &[u8], spec: ImageSpec) -> image::DynamicImage {
    let (w, h) = (spec.width as u32, spec.height as u32);
    if spec.channels == 1 {
        image::DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w, h, img.to_vec()).expect("C x H x W bytes"),
        )
    } else {
        let hw = spec.height * spec.width;
        let mut rgb = vec![0u8; 3 * hw];
        for i in 0..hw {
            for c in 0..3 {
                rgb[3 * i + c] = img[c * hw + i];
            }
        }
        image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, rgb).expect("3 x H x W"))
    }
}

/// Length in bits of the image losslessly compressed as PNG at the best compression: the
/// complexity estimate of Serrà et al. (2020) for complexity-corrected outlier scores.
pub fn png_bits(img: &[u8], spec: ImageSpec) -> usize {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
    let mut bytes = Vec::new();
    let dynamic = to_dynamic(img, spec);
    let encoder =
        PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, PngFilter::Adaptive);
    let color = if spec.channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let raw = match &dynamic {
        image::DynamicImage::ImageLuma8(g) => g.as_raw().clone(),
        other => other.to_rgb8().into_raw(),
    };
    encoder
        .write_image(&raw, spec.width as u32, spec.height as u32, color)
        .expect("PNG encoding into memory cannot fail");
    bytes.len() * 8
}

/// Save images (`C x H x W` bytes each) as one PNG grid of `cols` columns, each image scaled
/// up `scale` times (nearest neighbour), with a 2-pixel white border between images.
pub fn save_grid(
    path: &Path,
    images: &[Vec<u8>],
    spec: ImageSpec,
    cols: usize,
    scale: usize,
) -> Result<(), DataError> {
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols).max(1);
    let (cw, ch) = (spec.width * scale + 2, spec.height * scale + 2);
    let mut canvas = image::RgbImage::from_pixel(
        (cols * cw + 2) as u32,
        (rows * ch + 2) as u32,
        image::Rgb([255, 255, 255]),
    );
    let hw = spec.height * spec.width;
    for (k, img) in images.iter().enumerate() {
        let (r, c) = (k / cols, k % cols);
        for y in 0..spec.height * scale {
            for x in 0..spec.width * scale {
                let i = (y / scale) * spec.width + x / scale;
                let px = if spec.channels == 1 {
                    [img[i]; 3]
                } else {
                    [img[i], img[hw + i], img[2 * hw + i]]
                };
                canvas.put_pixel(
                    (2 + c * cw + x) as u32,
                    (2 + r * ch + y) as u32,
                    image::Rgb(px),
                );
            }
        }
    }
    canvas.save(path).map_err(|e| DataError::Image {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Model values in `[0, 1)` back to 8-bit pixels (the bin each value falls in).
pub fn to_pixels(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .map(|&v| (f64::from(v) * 256.0).floor().clamp(0.0, 255.0) as u8)
        .collect()
}
