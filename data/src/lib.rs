//! flowdata: datasets and loaders for flowmodels (toy generators, image folders on disk and
//! S3, tabular data). Filled in by the training and application issues; the crate exists now
//! so the workspace has its final shape.
