//! What applications 3 (images) and 4 (points) share: the two ways a flow classifies
//! ([`Mode`]), the `[classifier]` config group, class probabilities in chunks, and the
//! metrics: accuracy, confusion, expected calibration error.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use flowcore::classify::{Classifier, IbObjective};
use flowcore::inn::{InnLossConfig, InnObjective};
use flowcore::train::Objective;
use flowcore::{BaseConfig, Flow, Partition};
use serde::{Deserialize, Serialize};

use super::infer::{rows, to_vec};
use crate::run::ResolvedConfig;
use crate::run::cli::ConfigFlags;

/// The flag of `train` that chooses how the flow classifies.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClassifierFlags {
    /// `ib` or `inn` (classifier.mode).
    #[arg(long)]
    mode: Option<String>,
}

impl ConfigFlags for ClassifierFlags {
    fn sets(self) -> Vec<String> {
        self.mode
            .map(|m| vec![format!("classifier.mode={m}")])
            .unwrap_or_default()
    }
}

/// The flags of a classifier application's `train`: those that choose its data, and the mode.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClassifierAppFlags<D: clap::Args> {
    #[command(flatten)]
    data: D,
    #[command(flatten)]
    classifier: ClassifierFlags,
}

impl<D: ConfigFlags> ConfigFlags for ClassifierAppFlags<D> {
    fn sets(self) -> Vec<String> {
        [self.data.sets(), self.classifier.sets()].concat()
    }
}

/// How the flow classifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A Gaussian per class in latent space, maximum likelihood plus cross-entropy on the class
    /// posterior (the information-bottleneck INN of Ardizzone et al. 2020).
    Ib,
    /// The output split `[y | z]` of Ardizzone et al. 2019: a supervised loss on the one-hot
    /// `y`, MMD on `z`.
    Inn,
}

impl Mode {
    /// For tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ib => "IB-INN",
            Self::Inn => "INN split",
        }
    }
}

/// The `[classifier]` group.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierGroup {
    /// `ib` or `inn`.
    pub mode: Mode,
    /// `ib`: the weight of the cross-entropy against the NLL per dimension.
    pub beta: f64,
    /// `ib`: the standard deviation of the class means' initial values.
    pub class_init_std: f64,
    /// `inn`: the partition, or `auto` (`[x:D | pad:K] -> [y:K | z:D]` for points,
    /// `[x:D] -> [y:K | z:D-K]` for images).
    pub partition: String,
}

impl ClassifierGroup {
    /// The base the flow needs.
    pub fn base(&self, classes: usize) -> BaseConfig {
        match self.mode {
            Mode::Ib => BaseConfig::ClassGaussians {
                classes,
                init_std: self.class_init_std,
            },
            Mode::Inn => BaseConfig::StandardNormal,
        }
    }

    /// The INN partition for `dim` features and `classes` classes; `pad` pads the input to
    /// `dim + classes` (points) instead of taking `y` out of the features (images).
    pub fn partition(&self, dim: usize, classes: usize, pad: bool) -> Result<Partition> {
        let text = if self.partition == "auto" {
            if pad {
                format!("[x:{dim} | pad:{classes}] -> [y:{classes} | z:{dim}]")
            } else {
                if dim <= classes {
                    bail!(
                        "classifier.partition = \"auto\": {dim} features cannot hold {classes} \
                         labels and a latent part; give a partition with padding"
                    );
                }
                format!("[x:{dim}] -> [y:{classes} | z:{}]", dim - classes)
            }
        } else {
            self.partition.clone()
        };
        let p: Partition = text
            .parse()
            .map_err(|e| anyhow::anyhow!("classifier.partition: {e}"))?;
        use flowcore::{Role, Side};
        let (px, py) = (
            p.role_size(Side::Input, Role::Data),
            p.role_size(Side::Output, Role::Observation),
        );
        if px != dim || py != classes {
            bail!(
                "classifier.partition `{p}` has {px} data and {py} label dimensions, but the data \
                 have {dim} features and {classes} classes"
            );
        }
        Ok(p)
    }

    /// The training objective and the classifier it trains.
    pub fn objective(
        &self,
        dim: usize,
        classes: usize,
        pad: bool,
        inn: &InnLossConfig,
    ) -> Result<(Box<dyn Objective>, Classifier)> {
        Ok(match self.mode {
            Mode::Ib => {
                if !(self.beta.is_finite() && self.beta >= 0.0) {
                    bail!("classifier.beta must be 0 or positive, got {}", self.beta);
                }
                (
                    Box::new(IbObjective {
                        classes,
                        beta: self.beta,
                    }),
                    Classifier::Ib,
                )
            }
            Mode::Inn => {
                inn.validate().map_err(|e| anyhow::anyhow!("inn.{e}"))?;
                let objective = InnObjective {
                    partition: self.partition(dim, classes, pad)?,
                    config: inn.clone(),
                };
                (Box::new(objective.clone()), Classifier::Inn { objective })
            }
        })
    }
}

/// The config groups of a classifier application: `[classifier]`, and `[inn]` for its INN
/// mode.
#[derive(Clone, Debug)]
pub struct Classification {
    /// How the flow classifies.
    pub group: ClassifierGroup,
    /// The INN objective (`classifier.mode = "inn"`).
    pub inn: InnLossConfig,
}

/// What a classifier run trains: the objective, the classifier it makes, and the contents of
/// the run's `classes.json`.
pub struct ClassifierRun {
    /// The training objective.
    pub objective: Box<dyn Objective>,
    /// The classifier.
    pub classifier: Classifier,
    /// `("classes.json", contents)`.
    pub file: (&'static str, String),
}

impl Classification {
    /// The groups, taken from `resolved`.
    pub fn take(resolved: &mut ResolvedConfig) -> Result<Self> {
        Ok(Self {
            group: resolved.group("classifier")?,
            inn: resolved.group("inn")?,
        })
    }

    /// The objective and classifier for `dim` features of `classes`; `pad` pads the input of
    /// the INN mode (points) instead of taking the labels out of the features (images).
    pub fn start(&self, dim: usize, classes: &[String], pad: bool) -> Result<ClassifierRun> {
        let (objective, classifier) = self.group.objective(dim, classes.len(), pad, &self.inn)?;
        let file = ClassesFile::new(&self.group, classes, &classifier, &self.inn);
        Ok(ClassifierRun {
            objective,
            classifier,
            file: ("classes.json", serde_json::to_string_pretty(&file)?),
        })
    }

    /// The run tag of the mode.
    pub fn tag(&self) -> (String, String) {
        ("mode".into(), self.group.mode.name().into())
    }
}

/// What a classifier run saves besides its model, so that `predict` can use it alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassesFile {
    /// `ib` or `inn`.
    pub mode: Mode,
    /// The class names, in label order.
    pub classes: Vec<String>,
    /// The INN's partition (`inn` mode).
    pub partition: Option<String>,
    /// The INN's label noise (`inn` mode).
    pub label_noise: f64,
}

impl ClassesFile {
    /// What a run of `group` with `classes`, training `classifier`, saves.
    fn new(
        group: &ClassifierGroup,
        classes: &[String],
        classifier: &Classifier,
        inn: &InnLossConfig,
    ) -> Self {
        Self {
            mode: group.mode,
            classes: classes.to_vec(),
            partition: match classifier {
                Classifier::Inn { objective } => Some(objective.partition.to_string()),
                Classifier::Ib => None,
            },
            label_noise: inn.y_noise,
        }
    }

    /// The classifier it describes.
    pub fn classifier(&self) -> Result<Classifier> {
        Ok(match self.mode {
            Mode::Ib => Classifier::Ib,
            Mode::Inn => {
                let text = self
                    .partition
                    .as_deref()
                    .context("an `inn` classifier file names its partition")?;
                Classifier::Inn {
                    objective: InnObjective {
                        partition: text
                            .parse()
                            .map_err(|e| anyhow::anyhow!("partition: {e}"))?,
                        config: InnLossConfig {
                            y_noise: self.label_noise,
                            ..InnLossConfig::default()
                        },
                    },
                }
            }
        })
    }

    /// Read `classes.json` of the run in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("classes.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is missing: is {} a finished classifier run?",
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} does not parse", path.display()))
    }
}

/// One-hot rows of `labels`.
pub fn one_hot(labels: &[usize], classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        out[i * classes + l] = 1.0;
    }
    out
}

/// `log p(y = k | x)` of every row of `values` (`[n, dim]`), `[n, K]` row-major, in chunks.
pub fn class_log_probs(
    classifier: &Classifier,
    flow: &Flow,
    values: &[f32],
    dim: usize,
    device: &Device,
) -> Vec<f32> {
    let n = values.len() / dim;
    let mut out = Vec::new();
    for start in (0..n).step_by(1024) {
        let m = 1024.min(n - start);
        let x = rows(&values[start * dim..(start + m) * dim], dim, device);
        out.extend(to_vec(classifier.log_probs(flow, x).into_data()));
    }
    out
}

/// Accuracy, confusion and calibration of predictions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class names.
    pub classes: Vec<String>,
    /// Fraction predicted right.
    pub accuracy: f64,
    /// Accuracy per true class.
    pub per_class_accuracy: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Expected calibration error over 15 equal-width confidence bins.
    pub expected_calibration_error: f64,
    /// Mean `-log p(true class | x)`.
    pub cross_entropy: f64,
    /// Points or images judged.
    pub samples: usize,
}

/// The predicted class of each row of `log_probs` (`[n, K]`).
pub fn predictions(log_probs: &[f32], classes: usize) -> Vec<usize> {
    log_probs
        .chunks(classes)
        .map(|r| {
            r.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(k, _)| k)
        })
        .collect()
}

/// Metrics of `log_probs` (`[n, K]`) against `labels`.
pub fn metrics(log_probs: &[f32], labels: &[usize], classes: &[String]) -> ClassMetrics {
    let k = classes.len();
    let pred = predictions(log_probs, k);
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in labels.iter().zip(&pred) {
        confusion[t][p] += 1;
    }
    let n = labels.len().max(1);
    let right = labels.iter().zip(&pred).filter(|(t, p)| t == p).count();
    let per_class_accuracy = confusion
        .iter()
        .enumerate()
        .map(|(t, row)| row[t] as f64 / row.iter().sum::<usize>().max(1) as f64)
        .collect();
    let bins = 15;
    let mut bin = vec![(0usize, 0.0f64, 0.0f64); bins]; // (count, confidences, right)
    let mut ce = 0.0;
    for (i, (&t, &p)) in labels.iter().zip(&pred).enumerate() {
        let row = &log_probs[i * k..(i + 1) * k];
        let confidence = f64::from(row[p]).exp();
        let b = ((confidence * bins as f64) as usize).min(bins - 1);
        bin[b].0 += 1;
        bin[b].1 += confidence;
        bin[b].2 += f64::from(u8::from(t == p));
        ce -= f64::from(row[t]);
    }
    // Sum over bins of (n_b / N) |accuracy_b - confidence_b| = |right_b - confidences_b| / N.
    let ece = bin
        .iter()
        .map(|(_, conf, right)| (right - conf).abs() / n as f64)
        .sum::<f64>();
    ClassMetrics {
        classes: classes.to_vec(),
        accuracy: right as f64 / n as f64,
        per_class_accuracy,
        confusion,
        expected_calibration_error: ece,
        cross_entropy: ce / n as f64,
        samples: labels.len(),
    }
}

/// The metrics as a table for a terminal.
pub fn format_metrics(m: &ClassMetrics) -> String {
    let width = m.classes.iter().map(String::len).max().unwrap_or(5).max(9);
    let mut out = format!(
        "{:<width$} {:>8}  confusion (rows: true, columns: predicted)\n",
        "class", "accuracy"
    );
    for (t, name) in m.classes.iter().enumerate() {
        let cells: Vec<String> = m.confusion[t].iter().map(|c| format!("{c:>5}")).collect();
        out.push_str(&format!(
            "{name:<width$} {:>8.4}  {}\n",
            m.per_class_accuracy[t],
            cells.join("")
        ));
    }
    out.push_str(&format!(
        "accuracy {:.4} on {}, expected calibration error {:.4}, cross-entropy {:.4}\n",
        m.accuracy, m.samples, m.expected_calibration_error, m.cross_entropy
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_known_case() {
        // Three points of two classes: right with 0.9, right with 0.6, wrong with 0.8.
        let lp: Vec<f32> = [0.9f32, 0.1, 0.4, 0.6, 0.8, 0.2]
            .iter()
            .map(|p| p.ln())
            .collect();
        let m = metrics(&lp, &[0, 1, 1], &["a".into(), "b".into()]);
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.confusion, vec![vec![1, 0], vec![1, 1]]);
        assert_eq!(m.per_class_accuracy, vec![1.0, 0.5]);
        // Bins: 0.6 (right), 0.8 (wrong), 0.9 (right): |1-0.6| + |0-0.8| + |1-0.9| over 3.
        let ece = (0.4 + 0.8 + 0.1) / 3.0;
        assert!(
            (m.expected_calibration_error - ece).abs() < 1e-6,
            "{}",
            m.expected_calibration_error
        );
        let ce = -(0.9f64.ln() + 0.6f64.ln() + 0.2f64.ln()) / 3.0;
        assert!((m.cross_entropy - ce).abs() < 1e-6);
        assert_eq!(one_hot(&[1, 0], 2), vec![0.0, 1.0, 1.0, 0.0]);
    }
}
