//! The Glow scaling series (`bench --scaling`): the bench's Glow 32x32x3 model (3 levels x 4
//! steps x 64 channels) trained at batch 8, 16, 32 and 64, and at image sizes 16, 32 and 64 at
//! batch 16, so that the cost's growth with the work is on record beside the references'.

use super::{Case, TORCH_AND_TFP};

/// The series, in table order: ids `glow-{side}px-b{batch}`.
pub const SCALING: [Case; 6] = [
    Case {
        id: "glow-32px-b8",
        what: "Glow 32x32x3 (3 x 4 x 64), batch 8: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "glow-32px-b16",
        what: "Glow 32x32x3 (3 x 4 x 64), batch 16: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "glow-32px-b32",
        what: "Glow 32x32x3 (3 x 4 x 64), batch 32: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "glow-32px-b64",
        what: "Glow 32x32x3 (3 x 4 x 64), batch 64: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "glow-16px-b16",
        what: "Glow 16x16x3 (3 x 4 x 64), batch 16: training",
        references: TORCH_AND_TFP,
    },
    Case {
        id: "glow-64px-b16",
        what: "Glow 64x64x3 (3 x 4 x 64), batch 16: training",
        references: TORCH_AND_TFP,
    },
];

/// `(side, batch)` of a series id, `None` for any other id.
pub fn parse(id: &str) -> Option<(usize, usize)> {
    let rest = id.strip_prefix("glow-")?;
    let (side, batch) = rest.split_once("px-b")?;
    Some((side.parse().ok()?, batch.parse().ok()?))
}

/// Training steps for a point of the series: 30 at 32x32 and batch 16 (the `glow32` case),
/// fewer as the work per step grows, so that every point takes about as long.
pub fn steps(side: usize, batch: usize) -> usize {
    let work = (side * side * batch) as f64 / (32.0 * 32.0 * 16.0);
    ((30.0 / work).round() as usize).clamp(3, 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_id_parses_to_its_side_and_batch() {
        let parsed: Vec<_> = SCALING.iter().map(|c| parse(c.id)).collect();
        assert_eq!(
            parsed,
            [(32, 8), (32, 16), (32, 32), (32, 64), (16, 16), (64, 16)].map(Some)
        );
        assert_eq!(parse("glow32"), None);
        assert_eq!(parse("glow-32px-bx"), None);
        assert_eq!(steps(32, 16), 30);
        assert_eq!(steps(64, 16), 8);
    }
}
