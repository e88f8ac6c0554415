//! The planar robot arm of Ardizzone et al. 2019 (application 5).

use super::{Simulator, normal};
/// Ardizzone et al.'s planar robot arm: a rail offset `x1 ~ N(0, 1/4^2)` and three joint
/// angles `x2, x3, x4 ~ N(0, 1/2^2)`, segments of 0.5, 0.5 and 1; `y` is the end point.
#[derive(Clone, Copy, Debug, Default)]
pub struct RobotArm;

impl RobotArm {
    /// Segment lengths.
    pub const LENGTHS: [f64; 3] = [0.5, 0.5, 1.0];
    /// Prior standard deviations of the four parameters.
    pub const PRIOR_STD: [f64; 4] = [0.25, 0.5, 0.5, 0.5];

    /// The joints of the arm, from the rail to the end point: 4 `(horizontal, vertical)`
    /// points.
    pub fn joints(x: &[f64]) -> [(f64, f64); 4] {
        let mut p = (0.0, x[0]);
        let mut out = [p; 4];
        let mut angle = 0.0;
        for (i, l) in Self::LENGTHS.iter().enumerate() {
            angle += x[i + 1];
            p = (p.0 + l * angle.cos(), p.1 + l * angle.sin());
            out[i + 1] = p;
        }
        out
    }
}

impl Simulator for RobotArm {
    fn x_names(&self) -> Vec<String> {
        ["rail", "angle1", "angle2", "angle3"]
            .map(String::from)
            .to_vec()
    }

    fn y_names(&self) -> Vec<String> {
        ["end_horizontal", "end_vertical"]
            .map(String::from)
            .to_vec()
    }

    fn sample_prior(&self, rng: &mut dyn rand::RngCore) -> Vec<f64> {
        Self::PRIOR_STD.iter().map(|s| s * normal(rng)).collect()
    }

    fn simulate(&self, x: &[f64]) -> Vec<f64> {
        let end = Self::joints(x)[3];
        vec![end.0, end.1]
    }
}
