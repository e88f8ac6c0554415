//! Image folders: the embedded set and the same files on disk decode and batch identically;
//! bad input is reported with its path (skipped or stopping, as asked); missing folders are
//! clear errors; the prefetching batcher gives exactly the batches of `train_batch`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flowdata::DataError;
use flowdata::images::{
    Augment, EMBEDDED, EmbeddedSet, ImageBatches, ImageRoot, ImageSet, ImageSpec, OnBadImage,
    load_split, mirror_check, png_bits, train_batch,
};

const SPEC: ImageSpec = ImageSpec {
    channels: 1,
    height: 28,
    width: 28,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowdata-images-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first `per_class` embedded images of each class folder, written under `root`.
fn write_embedded(root: &Path, per_class: usize) {
    let mut counts = std::collections::HashMap::new();
    for (rel, bytes) in EMBEDDED {
        let class_dir = rel.rsplit_once('/').unwrap().0.to_string();
        let n = counts.entry(class_dir).or_insert(0);
        if *n < per_class {
            *n += 1;
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

#[test]
fn the_embedded_set_has_its_three_folders() {
    let train = load_split(
        &ImageRoot::Embedded(EmbeddedSet::FashionMnist),
        "train",
        SPEC,
        OnBadImage::Stop,
    )
    .unwrap();
    let val = load_split(
        &ImageRoot::Embedded(EmbeddedSet::FashionMnist),
        "val",
        SPEC,
        OnBadImage::Stop,
    )
    .unwrap();
    assert_eq!(train.len(), 2000);
    assert_eq!(train.class_names(), vec!["sneaker"]);
    assert_eq!(val.class_names(), vec!["bag", "sneaker"]);
    assert_eq!(val.len(), 400);
    assert_eq!(train.pixels.len(), 2000 * 784);
}

#[test]
fn disk_and_embedded_give_the_same_images_and_batches() {
    let dir = scratch("same");
    write_embedded(&dir, usize::MAX);
    let disk = load_split(
        &ImageRoot::Disk(dir.clone()),
        "train",
        SPEC,
        OnBadImage::Stop,
    )
    .unwrap();
    let emb = load_split(
        &ImageRoot::Embedded(EmbeddedSet::FashionMnist),
        "train",
        SPEC,
        OnBadImage::Stop,
    )
    .unwrap();
    assert_eq!(disk.pixels, emb.pixels);
    assert_eq!(disk.classes, emb.classes);
    let aug = Augment::default();
    assert_eq!(
        train_batch(&disk, &aug, 5, 9, 16),
        train_batch(&emb, &aug, 5, 9, 16)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn images_are_resized_and_converted_to_rgb() {
    let spec = ImageSpec {
        channels: 3,
        height: 16,
        width: 12,
    };
    let set = load_split(
        &ImageRoot::Embedded(EmbeddedSet::FashionMnist),
        "val",
        spec,
        OnBadImage::Stop,
    )
    .unwrap();
    assert_eq!(set.pixels.len(), 400 * 3 * 16 * 12);
    // Grey sources give three equal channels.
    let img = set.image(0);
    assert_eq!(&img[..192], &img[192..384]);
}

#[test]
fn bad_images_of_every_kind_are_skipped_or_stop_the_run() {
    let dir = scratch("corrupt");
    write_embedded(&dir, 5);
    let class = dir.join("train/sneaker");
    let first = std::fs::read_dir(&class).unwrap().next().unwrap();
    let good = std::fs::read(first.unwrap().path()).unwrap();
    let bad: [(&str, Vec<u8>); 5] = [
        ("a-truncated.png", good[..good.len() / 2].to_vec()),
        ("b-empty.png", Vec::new()),
        ("c-text.png", b"not an image at all\n".to_vec()),
        (
            "d-garbage.jpg",
            (0..997u32).map(|i| (i * 131 % 251) as u8).collect(),
        ),
        // A valid header claiming 60000 x 60000 pixels: a decompression bomb.
        ("e-bomb.png", png_header_only(60_000, 60_000)),
    ];
    for (name, bytes) in &bad {
        std::fs::write(class.join(name), bytes).unwrap();
    }
    let root = ImageRoot::Disk(dir.clone());
    let set = load_split(&root, "train", SPEC, OnBadImage::Skip).unwrap();
    assert_eq!(set.len(), 5, "the good images are kept");
    let skipped: Vec<&str> = set.skipped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(skipped.len(), bad.len(), "{skipped:?}");
    for ((name, _), (path, reason)) in bad.iter().zip(&set.skipped) {
        assert!(path.ends_with(name), "{path} is not {name}");
        assert!(!reason.is_empty(), "{path}: no reason given");
    }
    let err = load_split(&root, "train", SPEC, OnBadImage::Stop).unwrap_err();
    assert!(
        matches!(&err, DataError::Image { path, .. } if path.ends_with("a-truncated.png")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The signature and header chunk of a grey PNG of `w` x `h`, with no pixel data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc32(&ihdr).to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn missing_and_empty_folders_are_clear_errors() {
    let dir = scratch("missing");
    let e = load_split(
        &ImageRoot::Disk(dir.clone()),
        "train",
        SPEC,
        OnBadImage::Skip,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no `train/` folder") && e.contains(&dir.display().to_string()),
        "{e}"
    );
    std::fs::create_dir_all(dir.join("train/empty")).unwrap();
    let e = load_split(
        &ImageRoot::Disk(dir.clone()),
        "train",
        SPEC,
        OnBadImage::Skip,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no images"), "{e}");
    // An S3 root parses without touching the network; one that names no bucket is an error
    // naming the URL.
    assert!(matches!(
        ImageRoot::parse("s3://bucket/prefix"),
        Ok(ImageRoot::S3(loc, _)) if loc.bucket == "bucket" && loc.prefix == "prefix"
    ));
    let e = ImageRoot::parse("s3:///prefix").unwrap_err().to_string();
    assert!(e.contains("s3:///prefix") && e.contains("no bucket"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prefetched_batches_equal_direct_ones_across_a_jump() {
    let set = Arc::new(
        load_split(
            &ImageRoot::Embedded(EmbeddedSet::FashionMnist),
            "val",
            SPEC,
            OnBadImage::Stop,
        )
        .unwrap(),
    );
    let aug = Augment {
        flip: true,
        rotate_degrees: 10.0,
        zoom: 0.1,
    };
    let mut batches = ImageBatches::new(set.clone(), aug, 3, 8, 2);
    for step in (1..6).chain(20..23).chain(2..4) {
        assert_eq!(
            batches.batch(step, 8),
            train_batch(&set, &aug, 3, step, 8),
            "step {step}"
        );
    }
    // Dequantised values stay in [0, 1).
    assert!(
        train_batch(&set, &aug, 3, 1, 8)
            .values
            .iter()
            .all(|v| (0.0..1.0).contains(v))
    );
}

#[test]
fn augmentation_changes_images_but_identity_does_not() {
    let set = load_split(
        &ImageRoot::Embedded(EmbeddedSet::FashionMnist),
        "val",
        SPEC,
        OnBadImage::Stop,
    )
    .unwrap();
    let img = set.image(0);
    let mut rng = flowdata::batch_rng(0, 0);
    assert_eq!(Augment::default().apply(img, SPEC, &mut rng), img);
    let flip = Augment {
        flip: true,
        ..Default::default()
    };
    // Over a few draws a flip happens, and a flip is an exact mirror.
    let mirrored: Vec<u8> = (0..28)
        .flat_map(|y| (0..28).rev().map(move |x| (y, x)))
        .map(|(y, x)| img[y * 28 + x])
        .collect();
    let outs: Vec<Vec<u8>> = (0..8).map(|_| flip.apply(img, SPEC, &mut rng)).collect();
    assert!(outs.contains(&mirrored));
    assert!(outs.iter().all(|o| *o == mirrored || o == img));
}

#[test]
fn busier_images_compress_to_more_bits() {
    let flat = vec![0u8; 784];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let noisy: Vec<u8> = (0..784)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    let (flat_bits, noisy_bits) = (png_bits(&flat, SPEC), png_bits(&noisy, SPEC));
    // Random bytes cannot compress below 8 bits each; a flat image compresses to its headers.
    assert!(noisy_bits >= 784 * 8, "{noisy_bits}");
    assert!(noisy_bits > 4 * flat_bits, "{noisy_bits} vs {flat_bits}");
}

#[test]
fn the_embedded_classes_set_has_four_classes_and_an_unseen_one() {
    let root = ImageRoot::parse("embedded:fashion-mnist-classes").unwrap();
    assert_eq!(root, ImageRoot::Embedded(EmbeddedSet::FashionMnistClasses));
    let train = load_split(&root, "train", SPEC, OnBadImage::Stop).unwrap();
    assert_eq!(train.class_names(), ["bag", "sneaker", "trouser", "tshirt"]);
    assert_eq!(train.len(), 2000);
    let val =
        flowdata::images::load_any("embedded:fashion-mnist-classes/val", SPEC, OnBadImage::Stop)
            .unwrap();
    assert_eq!(
        val.class_names(),
        ["bag", "dress", "sneaker", "trouser", "tshirt"]
    );
    assert_eq!(val.len(), 500);
    let e = ImageRoot::parse("embedded:cifar").unwrap_err().to_string();
    assert!(
        e.contains("embedded:cifar") && e.contains("embedded:fashion-mnist-classes"),
        "{e}"
    );
    // Batches say which images they drew, so labels follow them.
    let b = train_batch(&train, &Augment::default(), 1, 2, 6);
    assert_eq!(b.indices.len(), 6);
    assert_eq!(b.values.len(), 6 * 784);
}

/// The images of `class` in `set`.
fn of_class(set: &ImageSet, class: &str) -> ImageSet {
    let idx: Vec<usize> = (0..set.len())
        .filter(|&i| set.classes[i] == class)
        .collect();
    ImageSet {
        spec: set.spec,
        pixels: idx.iter().flat_map(|&i| set.image(i).to_vec()).collect(),
        paths: idx.iter().map(|&i| set.paths[i].clone()).collect(),
        classes: idx.iter().map(|&i| set.classes[i].clone()).collect(),
        skipped: Vec::new(),
    }
}

#[test]
fn mirroring_suits_symmetric_classes_and_not_one_way_ones() {
    let root = ImageRoot::parse("embedded:fashion-mnist-classes").unwrap();
    let train = load_split(&root, "train", SPEC, OnBadImage::Stop).unwrap();
    for (class, symmetric) in [
        ("bag", true),
        ("tshirt", true),
        ("sneaker", false),
        ("trouser", false),
    ] {
        // A small folder and a larger one.
        for n in [80, 500] {
            let mut set = of_class(&train, class);
            set.pixels.truncate(n * 784);
            set.paths.truncate(n);
            set.classes.truncate(n);
            let c = mirror_check(&set, 200);
            assert_eq!(c.probes, n.min(200), "{class}");
            assert_eq!(c.flips_suit(), symmetric, "{class}, {n} images: {c:?}");
        }
    }
    // One one-way class among symmetric ones is enough to keep flips off.
    let all = mirror_check(&train, 200);
    assert!(!all.flips_suit(), "{all:?}");
    // Mirrored images of a mirror-symmetric set are the set itself: every ratio is 1.
    let mut symmetric = of_class(&train, "bag");
    for k in 0..symmetric.len() {
        let row = k * 784;
        let mirrored: Vec<u8> = symmetric.pixels[row..row + 784]
            .chunks(28)
            .flat_map(|r| r.iter().rev().copied())
            .collect();
        symmetric.pixels.extend(mirrored);
        symmetric.paths.push(format!("mirror-{k}"));
        symmetric.classes.push("bag".into());
    }
    let c = mirror_check(&symmetric, 100);
    assert!(c.upper_quartile_ratio <= 1.0 + 1e-12, "{c:?}");
    // Too few images to say anything.
    let mut tiny = of_class(&train, "bag");
    tiny.pixels.truncate(2 * 784);
    tiny.paths.truncate(2);
    tiny.classes.truncate(2);
    let c = mirror_check(&tiny, 100);
    assert_eq!(c.probes, 0);
    assert!(!c.flips_suit());
}
