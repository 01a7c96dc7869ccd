//! Measuring the platform: load scenarios at constant arrival rates (`paytool load`) and the
//! benchmarks (`paytool bench`). Figures, never assertions.

pub mod bench;
pub mod load;
