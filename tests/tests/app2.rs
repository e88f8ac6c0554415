//! Application 2 end to end on the embedded default (Fashion-MNIST sneakers, bags as
//! outliers): a short run separates bags from sneakers, scoring a run again reproduces its
//! scores, and a corrupt image is reported and skipped.

use std::path::{Path, PathBuf};

use flowapps::app2::{self, TrainOptions};
use flowdata::images::{EMBEDDED, OnBadImage};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowtests-app2-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn uniform_density_on_the_unit_cube_is_8_bits_per_dim() {
    // log p = 0 on [0, 1)^D is the uniform density of 8-bit data dequantised and scaled:
    // every one of the 256 levels of every dimension costs exactly 8 bits.
    for dim in [1, 784, 3072] {
        assert_eq!(app2::bits_per_dim_8bit(0.0, dim), 8.0);
    }
    // Twice as likely per dimension: one bit less.
    let d = 784;
    let lp = d as f64 * std::f64::consts::LN_2;
    assert!((app2::bits_per_dim_8bit(lp, d) - 7.0).abs() < 1e-12);
}

fn quick(extra: &[&str]) -> Vec<String> {
    let mut s: Vec<String> = vec![
        "training.epochs=2".into(),
        "training.steps_per_epoch=50".into(),
        "model.steps_per_level=2".into(),
        "model.hidden_channels=16".into(),
        "run.reference_images=300".into(),
    ];
    s.extend(extra.iter().map(|e| e.to_string()));
    s
}

fn train_in(dir: &Path, sets: Vec<String>) -> app2::TrainSummary {
    app2::train(&TrainOptions {
        sets,
        run_dir: Some(dir.join("run")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_short_run_scores_bags_above_sneakers() {
    let dir = scratch("default");
    let s = train_in(&dir, quick(&[]));
    let r = &s.report;
    eprintln!("{}", app2::format_table(&r.scores));
    assert_eq!((r.train_images, r.val_images), (2000, 200));
    let best = r.scores.best().expect("no AUROC: val/ has both folders");
    assert!(
        best.auroc.unwrap() >= 0.9,
        "best score {} has AUROC {:.3} < 0.9",
        best.name,
        best.auroc.unwrap()
    );
    let folder = |name: &str| r.scores.folders.iter().find(|f| f.folder == name).unwrap();
    assert!(folder("bag").mean[0] > folder("sneaker").mean[0]);
    assert!(!folder("bag").normal && folder("sneaker").normal);
    // Bits/dim of a trained model sit well below the 8 of a uniform density.
    assert!(r.val_bits_per_dim < 7.0, "{}", r.val_bits_per_dim);
    assert!(
        r.reconstruction_max_abs_err < 1e-3,
        "{}",
        r.reconstruction_max_abs_err
    );
    let csv = std::fs::read_to_string(&r.scores.csv).unwrap();
    assert_eq!(csv.lines().count(), 401);
    assert!(csv.starts_with("path,folder,outlier,bits_per_dim,complexity_corrected,typicality"));
    for f in r
        .run
        .figures
        .iter()
        .map(|f| s.run_dir.join(f))
        .chain(r.scores.figures.clone())
    {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            f.display()
        );
    }

    // Scoring the run again, as `score` does, gives the same numbers.
    let again = app2::score(
        &s.run_dir,
        "embedded:fashion-mnist/val",
        &dir.join("rescored").join("val.csv"),
        OnBadImage::Skip,
    )
    .unwrap();
    for (a, b) in again.scores.iter().zip(&r.scores.scores) {
        assert_eq!(a.auroc, b.auroc, "{}", a.name);
    }
    assert!(dir.join("rescored/val_summary.json").is_file());
    assert!(dir.join("rescored/val_roc.png").is_file());
    let e = format!(
        "{:#}",
        app2::score(
            &dir,
            "embedded:fashion-mnist/val",
            &dir.join("x"),
            OnBadImage::Skip
        )
        .unwrap_err()
    );
    assert!(e.contains("model.safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_training_image_is_reported_and_skipped() {
    let dir = scratch("corrupt");
    let root = dir.join("images");
    let mut kept = 0;
    for (rel, bytes) in EMBEDDED {
        // 100 training sneakers and 20 of each validation folder.
        let limit = if rel.starts_with("train/") { 100 } else { 20 };
        let folder = rel.rsplit_once('/').unwrap().0;
        let n = std::fs::read_dir(root.join(folder)).map_or(0, |d| d.count());
        if n < limit {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
            kept += 1;
        }
    }
    assert_eq!(kept, 140);
    std::fs::write(
        root.join("train/sneaker/zz-corrupt.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let images = format!("run.images={:?}", root.display().to_string());
    let s = train_in(
        &dir,
        quick(&[&images, "training.epochs=1", "training.steps_per_epoch=5"]),
    );
    assert_eq!((s.report.train_images, s.report.train_skipped), (100, 1));

    let stop = app2::train(&TrainOptions {
        sets: quick(&[&images, "run.on_bad_image=\"stop\""]),
        run_dir: Some(dir.join("stopped")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap_err();
    let e = format!("{stop:#}");
    assert!(e.contains("zz-corrupt.png"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
