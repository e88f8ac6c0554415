//! Application 1 end to end, driven as a library: quality against the entropy of the data,
//! resume, reproduction from a run's config, config errors, sampling and log-densities, and
//! tracking (the local MLflow store parsed back; a real MLflow server when `.ci/run` starts one).

use std::path::{Path, PathBuf};

use flowapps::app1::{self, TrainOptions, TrainSummary};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowtests-app1-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small, fast model and schedule; `extra` overrides go last.
fn sets(dataset: &str, extra: &[&str]) -> Vec<String> {
    let mut s: Vec<String> = [
        format!("run.dataset={dataset}"),
        "run.validation_size=8192".into(),
        "run.plot_points=500".into(),
        "model.num_layers=8".into(),
        "model.hidden_units=[64, 64]".into(),
        "training.batch_size=256".into(),
        "training.learning_rate=1e-3".into(),
        "training.epochs=10".into(),
        "training.steps_per_epoch=300".into(),
        r#"training.schedule={kind = "cosine_warm_restarts", period = 3000, min_lr = 1e-5}"#.into(),
    ]
    .into();
    s.extend(extra.iter().map(|e| e.to_string()));
    s
}

fn train_in(dir: &Path, sets: Vec<String>) -> TrainSummary {
    app1::train(&TrainOptions {
        sets,
        run_dir: Some(dir.join("run")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap()
}

fn check_quality(dataset: &str, reference_entropy: f64, extra: &[&str]) {
    // Tests of one dataset with other settings run at once: a directory each.
    let settings: String = extra
        .concat()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let dir = scratch(&format!("{dataset}-{settings}"));
    let s = train_in(&dir, sets(dataset, extra));
    let r = &s.report;
    eprintln!(
        "{dataset}: validation NLL {:.4}, entropy {reference_entropy}, {:.0} steps/s",
        r.val_nll, r.run.steps_per_sec
    );
    assert!(
        (r.val_nll - reference_entropy).abs() < 0.15,
        "{dataset}: validation NLL {:.4} is not within 0.15 nats of the entropy {reference_entropy}",
        r.val_nll
    );
    assert!(
        r.change_of_variables_max_abs_diff < 1e-3,
        "{dataset}: the two ways of computing log p differ by {}",
        r.change_of_variables_max_abs_diff
    );
    for fig in &r.run.figures {
        let bytes = std::fs::read(s.run_dir.join(fig)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{fig} is not a drawn PNG"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gmm_reaches_its_entropy() {
    // The ring of 8 Gaussians needs more capacity and steps than the unimodal sets.
    check_quality(
        "gmm",
        0.315,
        &[
            "model.hidden_units=[128, 128]",
            "training.epochs=20",
            r#"training.schedule={kind = "cosine_warm_restarts", period = 6000, min_lr = 1e-5}"#,
        ],
    );
}

#[test]
fn moons_reach_their_entropy() {
    check_quality("moons", 1.008, &[]);
}

#[test]
fn a_neural_spline_flow_reaches_the_entropy_of_the_moons() {
    check_quality("moons", 1.008, &["model.kind=nsf", "model.num_layers=4"]);
}

#[test]
fn a_masked_autoregressive_flow_reaches_the_entropy_of_the_moons() {
    // Two features: each block models one given the other; reversed between blocks.
    check_quality("moons", 1.008, &["model.kind=maf"]);
}

/// FFJORD's toy model (one continuous block, 64-64-64 concat-squash with tanh, Dormand-Prince
/// at 1e-5, exact trace) on the moons, with the classic questions answered against the
/// generator's own density.
#[test]
fn ffjord_reaches_the_entropy_of_the_moons_and_answers_the_classic_questions() {
    let dir = scratch("moons-ffjord");
    let sets: Vec<String> = [
        "run.dataset=moons",
        "run.validation_size=4096",
        "run.plot_points=1000",
        "model.kind=ffjord",
        "training.batch_size=256",
        "training.learning_rate=3e-3",
        "training.epochs=FFJORD_EPOCHS",
        "training.steps_per_epoch=100",
        "training.gradient_checkpointing=false",
        r#"training.schedule={kind = "cosine_warm_restarts", period = FFJORD_STEPS, min_lr = 1e-4}"#,
    ]
    .iter()
    .map(|s| {
        s.replace("FFJORD_EPOCHS", &FFJORD_EPOCHS.to_string())
            .replace("FFJORD_STEPS", &(100 * FFJORD_EPOCHS).to_string())
    })
    .collect();
    let s = train_in(&dir, sets);
    let r = &s.report;
    let moons = r.moons.as_ref().expect("moons answers");
    let ode = r.ode.as_ref().expect("the solves were counted");
    eprintln!(
        "ffjord moons: validation NLL {:.4} (entropy 1.008), log p(0, 0.5) {:.4} (true {:.4}), \
         (-0.1, 0.6) -> {:?}, KS {:.4} (critical {:.4}), {:.1} NFE per solve, {:.1} steps/s",
        r.val_nll,
        moons.log_p_at_0_05,
        moons.true_log_p_at_0_05,
        moons.latent_m01_06_in_data,
        r.latent_normality.ks_max,
        r.latent_normality.ks_critical,
        ode.nfe_per_solve,
        r.run.steps_per_sec
    );
    assert!(
        (r.val_nll - 1.008).abs() < 0.15,
        "validation NLL {:.4} is not within 0.15 nats of the entropy 1.008",
        r.val_nll
    );
    // (0, 0.5) is the tip of the lower moon, where the density falls fastest: the full run of
    // the closing note meets 0.1 there; this reduced one gets within about 0.4, and the
    // untrained model (the base, -1.96 there) is 0.8 away.
    assert!(
        (moons.log_p_at_0_05 - moons.true_log_p_at_0_05).abs() < 0.6,
        "log p(0, 0.5) is {:.4}, the generator's {:.4}",
        moons.log_p_at_0_05,
        moons.true_log_p_at_0_05
    );
    // Two adaptive solves, each accurate to its tolerance (1e-5 per step), on 1000 points.
    assert!(
        r.change_of_variables_max_abs_diff < 5e-3 && r.round_trip_max_abs_err < 1e-3,
        "log p both ways {:e}, round trip {:e}",
        r.change_of_variables_max_abs_diff,
        r.round_trip_max_abs_err
    );
    assert!(
        r.latent_normality.max_abs_cov_error < 0.2,
        "{:?}",
        r.latent_normality
    );
    assert!(ode.nfe_per_solve >= 8.0, "{ode:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Epochs of 100 steps of the FFJORD test.
const FFJORD_EPOCHS: usize = 10;

#[test]
fn mvn_reaches_its_entropy() {
    check_quality("mvn", 2.838, &[]);
}

#[test]
fn a_3d_mixture_trains() {
    // Six clusters of sigma 0.1 on the octahedron; entropy -0.859. A single Gaussian fitted
    // to them scores 2.65, so a model below entropy + 1 has learnt the clusters. With 3
    // features, reversing leaves the middle one always on the same side; random
    // permutations mix all three.
    let dir = scratch("gmm3d");
    let s = train_in(&dir, sets("gmm3d", &["model.permutation=random"]));
    let h = s.report.entropy.unwrap();
    eprintln!(
        "gmm3d: validation NLL {:.4}, entropy {h:.4}",
        s.report.val_nll
    );
    assert_eq!(s.report.dim, 3);
    assert!(
        s.report.val_nll < h + 1.0,
        "gmm3d: validation NLL {:.4} is not within 1 nat of the entropy {h:.4}",
        s.report.val_nll
    );
    // Every pair of axes is drawn for 3-D points: three panels make a wide figure.
    let png = std::fs::read(s.run_dir.join("data.png")).unwrap();
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert!(
        width >= 3 * 500,
        "data.png is {width} px wide: not three panels"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn weights(run: &Path) -> Vec<f32> {
    // The log-densities of fixed points are a function of every weight.
    let pts = run.join("probe.csv");
    let mut text = String::from("x0,x1\n");
    for i in 0..64 {
        let t = i as f32 / 10.0;
        text.push_str(&format!("{},{}\n", t.cos() * 1.3, t.sin() - 0.2));
    }
    std::fs::write(&pts, text).unwrap();
    app1::logprob(run, &pts).unwrap().2
}

#[test]
fn resuming_continues_the_same_curve() {
    let dir = scratch("resume");
    let short = |e: usize| {
        let mut s = sets(
            "moons",
            &["training.steps_per_epoch=20", "model.hidden_units=[32, 32]"],
        );
        s.push(format!("training.epochs={e}"));
        s
    };
    let straight = app1::train(&TrainOptions {
        sets: short(4),
        run_dir: Some(dir.join("straight")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap();
    app1::train(&TrainOptions {
        sets: short(2),
        run_dir: Some(dir.join("split")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap();
    let resumed = app1::train(&TrainOptions {
        sets: vec!["training.epochs=4".into()],
        resume: Some(dir.join("split")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap();
    let curve = |s: &TrainSummary| -> Vec<f64> {
        s.report.run.history.iter().map(|e| e.val_loss).collect()
    };
    assert_eq!(curve(&resumed).len(), 4);
    assert_eq!(
        curve(&straight),
        curve(&resumed),
        "validation curves differ"
    );
    assert_eq!(
        weights(&straight.run_dir),
        weights(&resumed.run_dir),
        "final weights differ"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_runs_config_reproduces_it() {
    let dir = scratch("reproduce");
    let quick = sets(
        "gmm",
        &[
            "training.epochs=2",
            "training.steps_per_epoch=20",
            "model.hidden_units=[16]",
        ],
    );
    let first = train_in(&dir, quick);
    let again = app1::train(&TrainOptions {
        config: Some(first.run_dir.join("config.toml")),
        run_dir: Some(dir.join("again")),
        tracking_dir: Some(dir.join("mlruns")),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(again.report.run.history.len(), 2);
    assert_eq!(again.report.dataset, "gmm");
    assert_eq!(weights(&first.run_dir), weights(&again.run_dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_errors_name_the_key() {
    let dir = scratch("config-errors");
    let err = |extra: &str| -> String {
        let e = app1::train(&TrainOptions {
            sets: vec![extra.to_string()],
            run_dir: Some(dir.join("run")),
            tracking_dir: Some(dir.join("mlruns")),
            ..Default::default()
        })
        .unwrap_err();
        format!("{e:#}")
    };
    let unknown = err("training.bach_size=3");
    assert!(
        unknown.contains("bach_size") && unknown.contains("training"),
        "{unknown}"
    );
    let wrong_type = err("training.batch_size=\"many\"");
    assert!(wrong_type.contains("training.batch_size"), "{wrong_type}");
    let dataset = err("run.dataset=spiral");
    assert!(
        dataset.contains("run.dataset") && dataset.contains("spiral"),
        "{dataset}"
    );
    let model = err("model.num_couplings=-1");
    assert!(
        model.contains("num_couplings") || model.contains("model"),
        "{model}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sample_and_logprob_use_the_trained_model() {
    let dir = scratch("sample");
    let s = train_in(
        &dir,
        sets(
            "mvn",
            &["training.epochs=3", "training.steps_per_epoch=100"],
        ),
    );
    let (values, dim) = app1::sample(&s.run_dir, 4000, 1.0, 3).unwrap();
    assert_eq!((values.len(), dim), (8000, 2));
    let mean = |j: usize| {
        values
            .iter()
            .skip(j)
            .step_by(2)
            .map(|&v| f64::from(v))
            .sum::<f64>()
            / 4000.0
    };
    // N([3, 5], I): the sample mean is within 0.1 after a short run.
    assert!(
        (mean(0) - 3.0).abs() < 0.1 && (mean(1) - 5.0).abs() < 0.1,
        "{} {}",
        mean(0),
        mean(1)
    );
    // Colder samples sit closer to the mode: smaller spread.
    let (cold, _) = app1::sample(&s.run_dir, 4000, 0.5, 3).unwrap();
    let spread = |v: &[f32]| {
        let m = v.iter().step_by(2).map(|&x| f64::from(x)).sum::<f64>() / 4000.0;
        v.iter()
            .step_by(2)
            .map(|&x| (f64::from(x) - m).powi(2))
            .sum::<f64>()
            / 4000.0
    };
    assert!(spread(&cold) < 0.5 * spread(&values));

    // log p of points written to CSV equals the model's density: its mean over fresh draws
    // from N([3,5], I) is close to minus the entropy.
    let csv = dir.join("points.csv");
    app1::write_csv(&csv, &values, 2, &app1::default_columns(2), None).unwrap();
    let (back, cols, lp) = app1::logprob(&s.run_dir, &csv).unwrap();
    assert_eq!(cols, vec!["x0", "x1"]);
    assert_eq!(back.len(), values.len());
    let mean_lp = lp.iter().map(|&v| f64::from(v)).sum::<f64>() / lp.len() as f64;
    assert!((mean_lp + 2.838).abs() < 0.2, "mean log p {mean_lp}");

    let three = dir.join("three.csv");
    std::fs::write(&three, "a,b,c\n1,2,3\n").unwrap();
    let e = format!("{:#}", app1::logprob(&s.run_dir, &three).unwrap_err());
    assert!(e.contains("three.csv") && e.contains("3 columns"), "{e}");
    let e = format!("{:#}", app1::sample(&dir, 10, 1.0, 0).unwrap_err());
    assert!(e.contains("model.safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The one run in the local store `mlruns` of experiment `flowmodels-app1`.
fn local_run(mlruns: &Path) -> PathBuf {
    let exp = std::fs::read_dir(mlruns)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p.join("meta.yaml"))
                .is_ok_and(|m| m.contains("name: 'flowmodels-app1'"))
        })
        .expect("no flowmodels-app1 experiment in the local store");
    let runs: Vec<PathBuf> = std::fs::read_dir(&exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(runs.len(), 1, "expected one run in {}", exp.display());
    runs[0].clone()
}

#[test]
fn the_local_store_has_params_metrics_tags_and_artifacts() {
    let dir = scratch("local-store");
    // A tracking server that is down: reported, and the run goes on locally.
    let s = app1::train(&TrainOptions {
        sets: sets(
            "moons",
            &[
                "training.epochs=3",
                "training.steps_per_epoch=20",
                "run.log_every=5",
            ],
        ),
        run_dir: Some(dir.join("run")),
        tracking_dir: Some(dir.join("mlruns")),
        tracking_uri: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(s.report.run.remote_run_id.is_none());
    let run = local_run(&dir.join("mlruns"));
    assert_eq!(run, s.report.run.tracking_run);
    let meta = read(&run.join("meta.yaml"));
    assert!(meta.contains("status: 3"), "run not FINISHED:\n{meta}");
    assert_eq!(read(&run.join("params/training.batch_size")), "256");
    assert_eq!(read(&run.join("params/run.dataset")), "moons");
    assert_eq!(read(&run.join("tags/app")), "train_flowmodels1");
    assert!(["local", "ec2", "awsbatch"].contains(&read(&run.join("tags/run_env")).as_str()));
    // Metric files: `timestamp value step` per line.
    let val: Vec<(f64, u64)> = read(&run.join("metrics/val_nll"))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "bad metric line `{l}`");
            f[0].parse::<u64>().expect("timestamp");
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let expected: Vec<(f64, u64)> = s
        .report
        .run
        .history
        .iter()
        .map(|e| (e.val_loss, e.epoch as u64))
        .collect();
    assert_eq!(val, expected);
    let steps = read(&run.join("metrics/train_loss")).lines().count();
    assert_eq!(steps, 60 / 5, "one train_loss per 5 steps");
    for f in [
        "config.toml",
        "samples.csv",
        "plots/data.png",
        "plots/latent.png",
        "plots/nll.png",
    ] {
        assert!(
            run.join("artifacts").join(f).is_file(),
            "artifact {f} missing"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// MLflow's REST API, as a check from outside the client under test.
fn mlflow_get(base: &str, endpoint: &str, query: &[(&str, &str)]) -> serde_json::Value {
    let url =
        reqwest::Url::parse_with_params(&format!("{base}/api/2.0/{endpoint}"), query).unwrap();
    let resp = reqwest::blocking::get(url).unwrap();
    assert!(
        resp.status().is_success(),
        "{endpoint}: HTTP {}",
        resp.status()
    );
    resp.json().unwrap()
}

#[test]
fn a_run_appears_on_a_real_mlflow_server() {
    let Ok(uri) = std::env::var("FLOWMODELS_TEST_MLFLOW_URI") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must start an MLflow server and set FLOWMODELS_TEST_MLFLOW_URI (see .ci/run)"
        );
        eprintln!("skipped: set FLOWMODELS_TEST_MLFLOW_URI to an MLflow server to run this test");
        return;
    };
    let dir = scratch("rest");
    let s = app1::train(&TrainOptions {
        sets: sets(
            "moons",
            &["training.epochs=3", "training.steps_per_epoch=20"],
        ),
        run_dir: Some(dir.join("run")),
        tracking_dir: Some(dir.join("mlruns")),
        tracking_uri: Some(uri.clone()),
        ..Default::default()
    })
    .unwrap();
    let id = s
        .report
        .run
        .remote_run_id
        .clone()
        .expect("the run was not created on the server");
    let run = mlflow_get(&uri, "mlflow/runs/get", &[("run_id", &id)]);
    assert_eq!(run["run"]["info"]["status"], "FINISHED");
    let params = run["run"]["data"]["params"].as_array().unwrap();
    let param = |k: &str| {
        params
            .iter()
            .find(|p| p["key"] == k)
            .map(|p| p["value"].as_str().unwrap().to_string())
    };
    assert_eq!(param("training.batch_size").as_deref(), Some("256"));
    assert_eq!(param("model.num_layers").as_deref(), Some("8"));
    let tags = run["run"]["data"]["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "app" && t["value"] == "train_flowmodels1")
    );
    assert!(tags.iter().any(|t| t["key"] == "run_env"));
    let history = mlflow_get(
        &uri,
        "mlflow/metrics/get-history",
        &[("run_id", &id), ("metric_key", "val_nll")],
    );
    let mut got: Vec<(u64, f64)> = history["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["step"].as_u64().unwrap(), m["value"].as_f64().unwrap()))
        .collect();
    got.sort_by_key(|m| m.0);
    let expected: Vec<(u64, f64)> = s
        .report
        .run
        .history
        .iter()
        .map(|e| (e.epoch as u64, e.val_loss))
        .collect();
    // The server keeps doubles; its JSON may differ in the last bit.
    assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
    for (g, e) in got.iter().zip(&expected) {
        assert!(
            g.0 == e.0 && (g.1 - e.1).abs() <= 1e-12 * e.1.abs(),
            "{got:?} vs {expected:?}"
        );
    }
    let listed = mlflow_get(
        &uri,
        "mlflow/artifacts/list",
        &[("run_id", &id), ("path", "plots")],
    );
    let files: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for f in [
        "plots/data.png",
        "plots/latent.png",
        "plots/samples_data.png",
        "plots/nll.png",
    ] {
        assert!(
            files.contains(&f),
            "{f} not among the server's artifacts {files:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
