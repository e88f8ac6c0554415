//! Glacier bedrock from the gravity anomaly of its ice (application 6).

use super::{Simulator, normal};
/// Newton's constant, m^3 kg^-1 s^-2.
pub const GRAVITATIONAL_CONSTANT: f64 = 6.674_30e-11;
/// m/s^2 per mGal.
pub const MGAL: f64 = 1e-5;

/// The vertical attraction, in m/s^2 (positive down), at the surface point `station` of a 2-D
/// body (infinite along the valley) of density contrast `density` that fills the ground from
/// the surface down to the depth `depth(u)` at horizontal position `u`, for `u` in
/// `[left, right]`, integrated over `columns` vertical columns.
///
/// A column from `u1` to `u2`, from the surface to depth `h`, attracts a station at `s` with
/// `G rho [F(u2 - s, h) - F(u1 - s, h)]`, `F(u, h) = u ln(1 + h^2/u^2) + 2 h atan(u/h)`: the
/// integral of `2 G rho z / (u^2 + z^2)` over the column.
pub fn gravity_of_fill(
    depth: impl Fn(f64) -> f64,
    left: f64,
    right: f64,
    columns: usize,
    density: f64,
    station: f64,
) -> f64 {
    fn f(u: f64, h: f64) -> f64 {
        if h <= 0.0 {
            return 0.0;
        }
        let log_term = if u == 0.0 {
            0.0
        } else {
            u * (h * h / (u * u)).ln_1p()
        };
        log_term + 2.0 * h * (u / h).atan()
    }
    let width = (right - left) / columns as f64;
    (0..columns)
        .map(|i| {
            let (u1, u2) = (left + i as f64 * width, left + (i + 1) as f64 * width);
            let h = depth(0.5 * (u1 + u2)).max(0.0);
            f(u2 - station, h) - f(u1 - station, h)
        })
        .sum::<f64>()
        * GRAVITATIONAL_CONSTANT
        * density
}

/// A glacier valley's cross-section: the ice thickness at `nodes` points evenly spaced inside
/// a valley of `width` metres (zero at both walls, linear in between) is the unknown; `y` is
/// the gravity anomaly of the ice (density contrast ice minus rock) in mGal at `stations`
/// surface points. The prior is a U-shaped mean profile with correlated Gaussian
/// perturbations.
#[derive(Clone, Debug)]
pub struct Glacier {
    /// Valley width, m.
    pub width: f64,
    /// Unknown thicknesses across the valley.
    pub nodes: usize,
    /// Station positions, m from the valley's centre.
    pub stations: Vec<f64>,
    /// Greatest mean thickness (at the centre), m.
    pub mean_depth: f64,
    /// Prior standard deviation of each thickness, m.
    pub depth_std: f64,
    /// Correlation length of the perturbations, m.
    pub correlation: f64,
    /// Density of ice minus density of rock, kg/m^3.
    pub density_contrast: f64,
    /// Columns of the forward integral.
    pub columns: usize,
    prior_factor: Vec<f64>,
}

impl Default for Glacier {
    fn default() -> Self {
        Self::new(2000.0, 6, vec![-600.0, -200.0, 200.0, 600.0])
    }
}

impl Glacier {
    /// A valley of `width` metres with `nodes` unknown thicknesses and stations at `stations`
    /// (metres from the centre); 400 m deepest mean thickness, 60 m prior spread correlated
    /// over 500 m, ice 917 kg/m^3 in rock of 2670.
    pub fn new(width: f64, nodes: usize, stations: Vec<f64>) -> Self {
        let mut g = Self {
            width,
            nodes,
            stations,
            mean_depth: 400.0,
            depth_std: 60.0,
            correlation: 500.0,
            density_contrast: 917.0 - 2670.0,
            columns: 48,
            prior_factor: Vec::new(),
        };
        g.prior_factor = g.cholesky();
        g
    }

    /// Horizontal positions of the nodes, m from the centre.
    pub fn node_positions(&self) -> Vec<f64> {
        let step = self.width / (self.nodes + 1) as f64;
        (1..=self.nodes)
            .map(|k| -0.5 * self.width + k as f64 * step)
            .collect()
    }

    /// The prior mean thickness at each node: `mean_depth sqrt(1 - (2u/width)^2)`.
    pub fn mean_profile(&self) -> Vec<f64> {
        self.node_positions()
            .iter()
            .map(|u| {
                let r = 2.0 * u / self.width;
                self.mean_depth * (1.0 - r * r).max(0.0).sqrt()
            })
            .collect()
    }

    /// The thickness at `u` of the piecewise-linear profile through the node thicknesses,
    /// zero at the walls.
    pub fn depth_at(&self, thickness: &[f64], u: f64) -> f64 {
        let half = 0.5 * self.width;
        if u <= -half || u >= half {
            return 0.0;
        }
        let step = self.width / (self.nodes + 1) as f64;
        let t = (u + half) / step;
        let k = (t.floor() as usize).min(self.nodes);
        let at = |i: usize| {
            if i == 0 || i > self.nodes {
                0.0
            } else {
                thickness[i - 1]
            }
        };
        let frac = t - k as f64;
        at(k) * (1.0 - frac) + at(k + 1) * frac
    }

    /// Lower Cholesky factor of the prior covariance, row-major.
    fn cholesky(&self) -> Vec<f64> {
        let pos = self.node_positions();
        let n = self.nodes;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let d = (pos[i] - pos[j]) / self.correlation;
                a[i * n + j] =
                    self.depth_std.powi(2) * (-0.5 * d * d).exp() + if i == j { 1e-9 } else { 0.0 };
            }
        }
        let mut l = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
                l[i * n + j] = if i == j {
                    (a[i * n + i] - s).sqrt()
                } else {
                    (a[i * n + j] - s) / l[j * n + j]
                };
            }
        }
        l
    }
}

impl Simulator for Glacier {
    fn x_names(&self) -> Vec<String> {
        self.node_positions()
            .iter()
            .map(|u| format!("thickness_at_{u:.0}m"))
            .collect()
    }

    fn y_names(&self) -> Vec<String> {
        self.stations
            .iter()
            .map(|s| format!("gravity_at_{s:.0}m"))
            .collect()
    }

    fn sample_prior(&self, rng: &mut dyn rand::RngCore) -> Vec<f64> {
        let n = self.nodes;
        let xi: Vec<f64> = (0..n).map(|_| normal(rng)).collect();
        self.mean_profile()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m + (0..=i)
                    .map(|k| self.prior_factor[i * n + k] * xi[k])
                    .sum::<f64>()
            })
            .collect()
    }

    fn simulate(&self, x: &[f64]) -> Vec<f64> {
        let half = 0.5 * self.width;
        self.stations
            .iter()
            .map(|&s| {
                gravity_of_fill(
                    |u| self.depth_at(x, u),
                    -half,
                    half,
                    self.columns,
                    self.density_contrast,
                    s,
                ) / MGAL
            })
            .collect()
    }
}
