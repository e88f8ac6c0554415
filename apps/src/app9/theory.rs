//! The `[theory]` group: the lattice and the couplings of the phi^4 action, in either of the
//! two common parametrisations.

use anyhow::{Result, bail};
use flowcore::lattice::{Phi4, Phi4Couplings};
use serde::{Deserialize, Serialize};

/// How the couplings are given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parametrisation {
    /// `kappa`, `m_sq`, `lambda` of
    /// `S = sum_x [kappa/2 sum_mu (phi(x+mu) - phi(x))^2 + m_sq/2 phi^2 + lambda phi^4]`.
    #[default]
    Standard,
    /// `hopping` and `lambda_h` of
    /// `S = sum_x [-2 hopping sum_mu chi(x) chi(x+mu) + chi^2 + lambda_h (chi^2 - 1)^2]`, run as
    /// the same theory in `phi = sqrt(2 hopping) chi` (see `Phi4Couplings::from_hopping`):
    /// fields, samples and observables are in `phi`.
    Hopping,
}

/// The `[theory]` group.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Theory {
    /// The periodic lattice: `[1]` one site, `[L]`, `[L, L]`, `[L, L, L]`.
    pub lattice: Vec<usize>,
    /// Which couplings are given.
    #[serde(default)]
    pub parametrisation: Parametrisation,
    /// Standard: the kinetic coupling.
    #[serde(default)]
    pub kappa: Option<f64>,
    /// Standard: the mass term.
    #[serde(default)]
    pub m_sq: Option<f64>,
    /// Standard: the quartic coupling.
    #[serde(default)]
    pub lambda: Option<f64>,
    /// Hopping: the hopping parameter.
    #[serde(default)]
    pub hopping: Option<f64>,
    /// Hopping: the quartic coupling.
    #[serde(default)]
    pub lambda_h: Option<f64>,
}

impl Theory {
    /// Drop the couplings of the other parametrisation than the chosen one that come from the
    /// defaults, not from `user` (the keys the user gave), here and from the run's config
    /// `table`, so that `--set theory.parametrisation="hopping"` needs no unsetting of the
    /// default standard couplings, while a user's own conflicting key is still refused.
    pub fn keep_given(&mut self, user: &toml::Table, table: &mut toml::Table) {
        let given = |key: &str| user.get("theory").and_then(|t| t.get(key)).is_some();
        let keys: Vec<&str> = match self.parametrisation {
            Parametrisation::Standard => vec!["hopping", "lambda_h"],
            Parametrisation::Hopping => vec!["kappa", "m_sq", "lambda"],
        };
        for key in keys {
            if given(key) {
                continue;
            }
            match key {
                "hopping" => self.hopping = None,
                "lambda_h" => self.lambda_h = None,
                "kappa" => self.kappa = None,
                "m_sq" => self.m_sq = None,
                _ => self.lambda = None,
            }
            if let Some(toml::Value::Table(t)) = table.get_mut("theory") {
                t.remove(key);
            }
        }
    }

    /// The couplings in the standard parametrisation; an error naming a missing key or one of
    /// the other parametrisation.
    pub fn couplings(&self) -> Result<Phi4Couplings> {
        let need = |v: Option<f64>, key: &str| match v {
            Some(v) => Ok(v),
            None => bail!(
                "theory.{key} is needed with theory.parametrisation = \"{}\"",
                self.name()
            ),
        };
        let refuse = |v: Option<f64>, key: &str| match v {
            Some(_) => bail!(
                "theory.{key} belongs to the other parametrisation, not \"{}\"",
                self.name()
            ),
            None => Ok(()),
        };
        match self.parametrisation {
            Parametrisation::Standard => {
                refuse(self.hopping, "hopping")?;
                refuse(self.lambda_h, "lambda_h")?;
                Ok(Phi4Couplings {
                    kappa: need(self.kappa, "kappa")?,
                    m_sq: need(self.m_sq, "m_sq")?,
                    lambda: need(self.lambda, "lambda")?,
                })
            }
            Parametrisation::Hopping => {
                refuse(self.kappa, "kappa")?;
                refuse(self.m_sq, "m_sq")?;
                refuse(self.lambda, "lambda")?;
                let d = self.lattice.iter().filter(|&&l| l > 1).count();
                Ok(Phi4Couplings::from_hopping(
                    need(self.hopping, "hopping")?,
                    need(self.lambda_h, "lambda_h")?,
                    d,
                )?)
            }
        }
    }

    /// The action, checked.
    pub fn action(&self) -> Result<Phi4> {
        Phi4::new(&self.lattice, self.couplings()?).map_err(|e| anyhow::anyhow!("[theory]: {e}"))
    }

    fn name(&self) -> &'static str {
        match self.parametrisation {
            Parametrisation::Standard => "standard",
            Parametrisation::Hopping => "hopping",
        }
    }
}
