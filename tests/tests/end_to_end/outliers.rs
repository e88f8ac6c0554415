//! Application 2's outlier scores where likelihood fails: a model of all ten Fashion-MNIST
//! classes gives MNIST-like digits (scikit-learn's, upscaled) fewer bits/dim than its own
//! classes (Nalisnick et al. 2019). The folders come from `scripts/ood-pairs.py` (Debian's
//! `dataset-fashion-mnist`, PyPI's scikit-learn); `.ci/run` makes them at reduced size and
//! names them in `FLOWMODELS_TEST_OOD_PAIRS`.

use std::path::PathBuf;

use flowapps::app2::{self, TrainOptions};
use flowdata::images::OnBadImage;

/// The folder of `ood-pairs.py`, or `None` (the test is skipped) outside CI.
fn pairs() -> Option<PathBuf> {
    let Ok(dir) = std::env::var("FLOWMODELS_TEST_OOD_PAIRS") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must make the outlier pairs and set FLOWMODELS_TEST_OOD_PAIRS (see .ci/run)"
        );
        eprintln!(
            "skipped: set FLOWMODELS_TEST_OOD_PAIRS to the output of scripts/ood-pairs.py \
             OUT --train-per-class 200 --val-per-class 30 --outliers 300"
        );
        return None;
    };
    Some(PathBuf::from(dir))
}

#[test]
fn all_classes_against_simpler_images_at_reduced_size() {
    let Some(pairs) = pairs() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("flowtests-outliers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A small Glow, briefly trained: 2000 training images, 500 steps; the background model
    // with the default settings, for half as many.
    let sets: Vec<String> = [
        format!(
            "run.images={:?}",
            pairs.join("all-vs-digits").display().to_string()
        ),
        "training.epochs=10".into(),
        "training.steps_per_epoch=50".into(),
        "model.steps_per_level=2".into(),
        "model.hidden_channels=16".into(),
        "run.reference_images=300".into(),
    ]
    .into();
    let s = app2::train(&TrainOptions {
        sets,
        run_dir: Some(dir.join("run")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap();
    eprintln!("{}", app2::format_table(&s.report.scores));

    // Judged on images the recommendation was not chosen on: other clothes, other digits.
    let held_out = app2::score(
        &s.run_dir,
        &pairs.join("all-vs-digits-test").display().to_string(),
        &dir.join("held-out").join("scores.csv"),
        OnBadImage::Stop,
    )
    .unwrap();
    eprintln!("{}", app2::format_table(&held_out));
    let auroc = |name: &str| {
        let i = held_out.index(name).unwrap();
        held_out.scores[i].auroc.unwrap()
    };
    // The failure: the digits are likelier than the clothes.
    assert!(auroc("bits_per_dim") < 0.3, "{}", auroc("bits_per_dim"));
    let recommended = &held_out.flagged_by;
    assert!(
        auroc(recommended) >= 0.9,
        "the recommended score {recommended} has AUROC {:.3} < 0.9 on held-out images",
        auroc(recommended)
    );
    assert!(
        auroc(app2::LIKELIHOOD_RATIO) >= 0.9,
        "{}",
        auroc(app2::LIKELIHOOD_RATIO)
    );
    // Held-out clothes are flagged near the configured 5%, digits mostly.
    let flagged = |folder: &str| {
        let f = held_out
            .folders
            .iter()
            .find(|f| f.folder == folder)
            .unwrap();
        f.flagged[held_out.index(recommended).unwrap()]
    };
    let clothes: f64 = held_out
        .folders
        .iter()
        .filter(|f| f.normal)
        .map(|f| f.flagged[held_out.index(recommended).unwrap()])
        .sum::<f64>()
        / 10.0;
    assert!(clothes <= 0.15, "{clothes}");
    assert!(flagged("digits") >= 0.3, "{}", flagged("digits"));
    let _ = std::fs::remove_dir_all(&dir);
}
