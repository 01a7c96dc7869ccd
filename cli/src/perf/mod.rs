//! Measuring the platform: load scenarios at constant arrival rates (`paytool load`) and the
//! benchmarks (`paytool bench`), with one way of computing latency figures (`stats`). Figures,
//! never assertions.

pub mod bench;
pub mod load;
pub mod stats;
