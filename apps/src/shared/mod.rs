//! Helpers several applications use: inference in chunks ([`infer`]), figures ([`plot`]),
//! outlier-score statistics ([`scores`]), CSV output ([`csv`]), the classifiers of
//! applications 3 and 4 ([`classify`]) and their class evidence ([`evidence`]), the image keys and splits of applications 2 and 3
//! ([`images`]), and the held-out split of point files of applications 1 and 4 ([`points`]).

pub mod classify;
pub mod csv;
pub mod evidence;
pub mod images;
pub mod infer;
pub mod normality;
pub mod plot;
pub mod points;
pub mod scores;
