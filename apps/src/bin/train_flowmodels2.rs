//! Application 2: image generation and anomaly detection on image folders.
//!
//! The flow core it will train (flowcore's Glow) exists; the image data pipeline, training
//! loop and scoring come with the application-2 issue. Until then this binary says so.

fn main() {
    let glow = flowcore::GlowConfig::new(1, 28, 28);
    eprintln!(
        "train_flowmodels2 is not built yet: the image pipeline, training and outlier scoring \
         arrive with the application-2 issue.\nThe flow core is in place; its default Glow \
         would be {} levels x {} steps x {} hidden channels.",
        glow.levels, glow.steps_per_level, glow.hidden_channels
    );
}
