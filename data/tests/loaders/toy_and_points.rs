//! The toy generators (names, determinism, and the entropies the training tests compare
//! against) and the point CSV reader's errors.

use std::f64::consts::PI;

use flowdata::{Toy, batch_rng, read_points_csv};

#[test]
fn names_parse_and_print_back() {
    for name in [
        "moons:0.1",
        "mvn",
        "gmm",
        "helix:0.05",
        "gmm3d",
        "moons:0.25",
    ] {
        let toy: Toy = name.parse().unwrap();
        assert_eq!(toy.to_string(), name);
    }
    assert_eq!("moons".parse::<Toy>().unwrap(), Toy::Moons { noise: 0.1 });
    let e = "spiral".parse::<Toy>().unwrap_err().to_string();
    assert!(e.contains("spiral") && e.contains("moons, mvn, gmm"), "{e}");
    let e = "moons:-1".parse::<Toy>().unwrap_err().to_string();
    assert!(e.contains("-1"), "{e}");
    assert!("gmm:3".parse::<Toy>().is_err());
}

#[test]
fn batches_are_a_function_of_seed_and_index() {
    let toy = Toy::Moons { noise: 0.1 };
    let a = toy.sample(64, &mut batch_rng(7, 3));
    assert_eq!(a.len(), 128);
    assert_eq!(a, toy.sample(64, &mut batch_rng(7, 3)));
    assert_ne!(a, toy.sample(64, &mut batch_rng(7, 4)));
    assert_ne!(a, toy.sample(64, &mut batch_rng(8, 3)));
}

fn log_normal(x: &[f64], mean: &[f64], sigma: f64) -> f64 {
    let d = x.len() as f64;
    let sq: f64 = x.iter().zip(mean).map(|(a, b)| (a - b).powi(2)).sum();
    -0.5 * sq / (sigma * sigma) - d * (sigma * (2.0 * PI).sqrt()).ln()
}

fn log_mixture(x: &[f64], means: &[Vec<f64>], sigma: f64) -> f64 {
    let terms: Vec<f64> = means.iter().map(|m| log_normal(x, m, sigma)).collect();
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + (terms.iter().map(|t| (t - max).exp()).sum::<f64>() / means.len() as f64).ln()
}

/// Monte Carlo entropy -E[log p(x)] under the true density, against `Toy::entropy`.
fn check_entropy(toy: Toy, log_p: impl Fn(&[f64]) -> f64) {
    let n = 200_000;
    let d = toy.dim();
    let x = toy.sample(n, &mut batch_rng(1, 0));
    let h = -x
        .chunks(d)
        .map(|p| log_p(&p.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()))
        .sum::<f64>()
        / n as f64;
    let stated = toy.entropy().unwrap();
    assert!(
        (h - stated).abs() < 0.01,
        "{toy}: Monte Carlo entropy {h:.4}, stated {stated:.4}"
    );
}

#[test]
fn stated_entropies_match_the_true_densities() {
    check_entropy(Toy::Mvn, |x| log_normal(x, &[3.0, 5.0], 1.0));
    let ring: Vec<Vec<f64>> = (0..8)
        .map(|k| {
            let a = 2.0 * PI * f64::from(k) / 8.0;
            vec![1.4 * a.cos(), 1.4 * a.sin()]
        })
        .collect();
    check_entropy(Toy::Gmm, |x| log_mixture(x, &ring, 0.1));
    let octahedron: Vec<Vec<f64>> = (0..6)
        .map(|k| {
            let mut c = vec![0.0; 3];
            c[k / 2] = if k % 2 == 0 { 1.0 } else { -1.0 };
            c
        })
        .collect();
    check_entropy(Toy::Gmm3d, |x| log_mixture(x, &octahedron, 0.1));
}

fn csv(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("flowdata-{}-{name}.csv", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn csv_reads_header_and_rows() {
    let p = csv("ok", "a, b\n1,2\n\n# comment\n3.5,-4\n");
    let pts = read_points_csv(&p).unwrap();
    assert_eq!((pts.n, pts.dim), (2, 2));
    assert_eq!(pts.columns, vec!["a", "b"]);
    assert_eq!(pts.values, vec![1.0, 2.0, 3.5, -4.0]);
    let p = csv("noheader", "1,2,3\n4,5,6\n");
    assert_eq!(read_points_csv(&p).unwrap().columns, vec!["x0", "x1", "x2"]);
}

#[test]
fn csv_errors_name_file_and_line() {
    let cases = [
        ("word", "a,b\n1,2\n3,x\n", ":3:", "`x` is not a number"),
        ("ragged", "1,2\n3,4,5\n", ":2:", "3 values"),
        ("nan", "1,2\nNaN,4\n", ":2:", "not a finite number"),
        ("empty", "a,b\n", "", "no points"),
    ];
    for (name, text, at, what) in cases {
        let p = csv(name, text);
        let e = read_points_csv(&p).unwrap_err().to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains(at) && e.contains(what),
            "{name}: {e}"
        );
    }
    let e = read_points_csv(std::path::Path::new("/nonexistent/points.csv"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/points.csv"), "{e}");
}

#[test]
fn labelled_toys_label_points_by_their_component() {
    let (pts, labels) = Toy::Gmm.sample_labelled(2000, &mut batch_rng(5, 1));
    assert_eq!(Toy::Gmm.classes(), Some(8));
    // Each point lies nearest the centre of its own component (sigma 0.1, centres 1.07 apart).
    let wrong = pts
        .chunks(2)
        .zip(&labels)
        .filter(|(p, k)| {
            let nearest = (0..8)
                .min_by(|&a, &b| {
                    let d = |k: usize| {
                        let c = Toy::Gmm.class_centre(k).unwrap();
                        (c[0] - f64::from(p[0])).powi(2) + (c[1] - f64::from(p[1])).powi(2)
                    };
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            nearest != **k
        })
        .count();
    assert!(wrong < 10, "{wrong} of 2000 points nearer another centre");
    // The same draws as the unlabelled sampler, so app 1's data did not change.
    assert_eq!(Toy::Gmm.sample(2000, &mut batch_rng(5, 1)), pts);
    assert_eq!(Toy::Mvn.classes(), None);
    let (_, moon) = Toy::Moons { noise: 0.1 }.sample_labelled(100, &mut batch_rng(1, 1));
    assert!(moon.contains(&0) && moon.contains(&1) && moon.iter().all(|&k| k < 2));
}

#[test]
fn labelled_csvs_name_their_classes_and_errors() {
    let dir = std::env::temp_dir().join(format!("flowdata-labelled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.csv");
    std::fs::write(&file, "a,label,b\n1,10,2\n3,2,4\n5,10,6\n").unwrap();
    let lp = flowdata::read_labelled_points_csv(&file, "label").unwrap();
    // Integer labels sort as numbers, not text.
    assert_eq!(lp.class_names, ["2", "10"]);
    assert_eq!(lp.labels, [1, 0, 1]);
    assert_eq!(lp.points.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(lp.points.columns, ["a", "b"]);
    let e = flowdata::read_labelled_points_csv(&file, "class")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("p.csv:1") && e.contains("labels missing") && e.contains("a, label, b"),
        "{e}"
    );
    std::fs::write(&file, "a,label\n1,x\n2,\n").unwrap();
    let e = flowdata::read_labelled_points_csv(&file, "label")
        .unwrap_err()
        .to_string();
    assert!(e.contains("p.csv:3") && e.contains("no label"), "{e}");
    std::fs::write(&file, "a,label\nq,x\n").unwrap();
    let e = flowdata::read_labelled_points_csv(&file, "label")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("p.csv:2") && e.contains("`q` is not a number"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
