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

/// `score` of the run's own validation folder into `dir/rescored` gives the run's AUROCs.
fn rescoring_repeats_the_scores(s: &app2::TrainSummary, dir: &Path) {
    let again = app2::score(
        &s.run_dir,
        "embedded:fashion-mnist/val",
        &dir.join("rescored").join("val.csv"),
        OnBadImage::Skip,
    )
    .unwrap();
    for (a, b) in again.scores.iter().zip(&s.report.scores.scores) {
        assert_eq!(a.auroc, b.auroc, "{}", a.name);
    }
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
    // Every score in the CSV (the likelihood ratio of the background model, on by default,
    // last), then each level's latent NLL (the default Glow has 2 levels), then the flags of
    // the recommended score.
    let header = csv.lines().next().unwrap();
    assert_eq!(
        header,
        format!(
            "path,folder,outlier,bits_per_dim,complexity_corrected,typicality,\
             complexity_deflate,latent_norm,level_ratio,likelihood_ratio,level_1_nll,\
             level_2_nll,flagged_by_{}",
            r.scores.flagged_by
        )
    );
    let names: Vec<&str> = r.scores.scores.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 7);
    assert!(s.run_dir.join(app2::BACKGROUND_FILE).is_file());
    assert!(
        r.scores
            .scores
            .iter()
            .all(|s| s.auroc.is_some() && s.fpr_at_95_tpr.is_some())
    );
    assert_eq!(r.scores.level_nll.len(), 2);
    for name in &names {
        let hist = format!("scores_hist_{name}.png");
        assert!(
            r.scores.figures.iter().any(|f| f.ends_with(&hist)),
            "{hist}"
        );
        for metric in [format!("auroc_{name}"), format!("fpr95_{name}")] {
            let path = r.run.tracking_run.join("metrics").join(&metric);
            assert!(path.is_file(), "{} is not tracked", metric);
        }
    }
    // Flagged at the reference's 0.95 quantile: val/sneaker is the reference here.
    let by = r.scores.index(&r.scores.flagged_by).unwrap();
    assert!((folder("sneaker").flagged[by] - 0.05).abs() < 0.02);
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
    rescoring_repeats_the_scores(&s, &dir);
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

/// A small training folder, laid out from the embedded set: `train/sneaker` (16), `val/`
/// (100 held-out sneakers, 100 bags) and `new/` (100 other sneakers, 100 other bags).
fn small_folder(root: &Path) {
    let (mut sneakers, mut bags) = (0, 0);
    for (rel, bytes) in EMBEDDED {
        let name = rel.rsplit_once('/').unwrap().1;
        let dest = if rel.starts_with("train/sneaker/") {
            sneakers += 1;
            match sneakers {
                1..=16 => "train/sneaker",
                17..=116 => "val/sneaker",
                117..=216 => "new/sneaker",
                _ => continue,
            }
        } else if rel.starts_with("val/bag/") {
            bags += 1;
            match bags {
                1..=100 => "val/bag",
                101..=200 => "new/bag",
                _ => continue,
            }
        } else {
            continue;
        };
        let path = root.join(dest).join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    assert_eq!((sneakers.min(216), bags), (216, 200));
}

#[test]
fn a_small_folder_is_scored_with_its_best_epoch_and_held_out_thresholds() {
    // 16 training images are memorised within a few epochs: validation bits/dim rise while
    // training's fall. The default config stops early, keeps the best epoch's weights, warns,
    // and takes the thresholds from held-out images, so new normal images are flagged at
    // about the configured rate. Thresholds from training images, which such a model scores
    // too well, flagged 26% of held-out sneakers at the 0.95 quantile after 80 images.
    let dir = scratch("small");
    let root = dir.join("images");
    small_folder(&root);
    let s = train_in(
        &dir,
        vec![
            format!("run.images={:?}", root.join("").display().to_string()),
            "model.steps_per_level=4".into(),
            "model.hidden_channels=32".into(),
            "training.steps_per_epoch=50".into(),
            "training.batch_size=16".into(),
        ],
    );
    let r = &s.report;
    eprintln!("{}", app2::format_table(&r.scores));
    // `flip = "auto"`: sneakers all point one way, so their mirrors are not trained on.
    assert!(!r.flipped);
    let history = &r.run.history;
    let best = history
        .iter()
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .unwrap();
    let last = history.last().unwrap();
    assert!(
        r.run.stopped_early,
        "16 images were not memorised in 20 epochs"
    );
    assert!(last.val_loss > best.val_loss && last.epoch > best.epoch);
    assert_eq!(r.run.model_epoch, best.epoch);
    assert!(
        r.run.warnings.iter().any(|w| w.contains("diverge")),
        "{:?}",
        r.run.warnings
    );
    // The model scored is the best epoch's: its validation bits/dim are the best epoch's.
    assert!(
        (r.val_bits_per_dim - best.val_bits_per_dim.unwrap()).abs() < 1e-3,
        "{} against {:?}",
        r.val_bits_per_dim,
        best.val_bits_per_dim
    );
    let reference: app2::Reference =
        serde_json::from_str(&std::fs::read_to_string(s.run_dir.join("reference.json")).unwrap())
            .unwrap();
    assert_eq!(
        (reference.source.as_str(), reference.images),
        ("held-out", 100)
    );
    let best_score = r.scores.best().unwrap();
    assert!(best_score.auroc.unwrap() >= 0.9, "{best_score:?}");
    // The best score on val/ flags images, in this run and in later `score` runs.
    assert_eq!(
        (&r.scores.flagged_by, &reference.recommended),
        (&best_score.name, &best_score.name)
    );

    // Images the run never saw: new sneakers flagged near the 5% asked for, bags mostly.
    let new = app2::score(
        &s.run_dir,
        &root.join("new").display().to_string(),
        &dir.join("new.csv"),
        OnBadImage::Skip,
    )
    .unwrap();
    eprintln!("{}", app2::format_table(&new));
    assert_eq!(new.flagged_by, reference.recommended);
    let by = new.index(&new.flagged_by).unwrap();
    let flagged = |name: &str| {
        new.folders
            .iter()
            .find(|f| f.folder == name)
            .unwrap()
            .flagged[by]
    };
    assert!(flagged("sneaker") <= 0.25, "{}", flagged("sneaker"));
    assert!(flagged("bag") >= 0.8, "{}", flagged("bag"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The continuous flow's image config (`apps/configs/app2-ffjord.toml`: convolutional
/// dynamics, Hutchinson's trace) at reduced size: it learns the sneakers well below the 8
/// bits/dim of a uniform density, separates the bags, and scoring the run again gives the same
/// numbers (the probes outside training are seeded).
#[test]
fn a_convolutional_ffjord_learns_the_sneakers_and_scores_bags_above_them() {
    let dir = scratch("ffjord");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps/configs/app2-ffjord.toml");
    let s = app2::train(&TrainOptions {
        config: Some(config),
        sets: [
            "training.epochs=1",
            "training.steps_per_epoch=25",
            // Half the config's solver steps: half the test's time (its inverse is not asserted).
            "model.solver={method=\"rk4\",steps=4}",
            "model.eval_probes=1",
            "run.reference_images=200",
        ]
        .map(String::from)
        .to_vec(),
        run_dir: Some(dir.join("run")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap();
    let r = &s.report;
    eprintln!("{}", app2::format_table(&r.scores));
    assert!(r.val_bits_per_dim < 7.0, "{}", r.val_bits_per_dim);
    // Not asserted: the inverse's accuracy. Early in training the learnt flow contracts so
    // strongly that inverting it amplifies the solver's error (reconstructions off by 0.97
    // after 40 steps, 0.014 after 60); the harness checks the layer's round trip.
    eprintln!("reconstruction error {}", r.reconstruction_max_abs_err);
    let bits = &r.scores.scores[r.scores.index("bits_per_dim").unwrap()];
    assert!(
        bits.auroc.unwrap() >= 0.9,
        "bits/dim AUROC {:?}",
        bits.auroc
    );
    rescoring_repeats_the_scores(&s, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Both continuous-flow configs merge over the defaults into a model that builds for the
/// embedded images, and the GPU one keeps its adaptive solver.
#[test]
fn the_ffjord_configs_build_their_models_for_28x28_images() {
    use flowcore::arch::{Architecture, DataShape};
    use flowcore::layers::ImageShape;
    let defaults = include_str!("../../../apps/configs/app2.toml");
    for name in ["app2-ffjord.toml", "app2-ffjord-gpu.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../apps/configs")
            .join(name);
        let table = flowapps::run::config::resolve_table(defaults, Some(&path), &[]).unwrap();
        let model = table.get("model").expect("a [model]").clone();
        let config: flowcore::ArchitectureConfig = model.try_into().unwrap();
        let flowcore::ArchitectureConfig::Ffjord(ffjord) = config else {
            panic!("{name}: not an ffjord model");
        };
        assert!(ffjord.eval_probes > 0, "{name}: exact traces of 784 pixels");
        let ffjord = ffjord.with_data_shape(&DataShape::image(ImageShape::new(1, 28, 28)));
        let flow = flowcore::Flow::new(ffjord.into(), &burn::prelude::Device::flex()).unwrap();
        assert_eq!(flow.dim(), 784, "{name}");
    }
}
