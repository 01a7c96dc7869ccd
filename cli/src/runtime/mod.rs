//! The local runtime: one installation's state directory, its ports and TLS, installing the
//! engines (`setup`), the supervisor and the components it runs, and the commands that start,
//! stop and inspect them.

pub mod components;
pub mod db;
pub mod down;
pub mod home;
pub mod logs;
pub mod ports;
pub mod probe;
pub mod project;
pub mod rollout;
pub mod setup;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod tls;
pub mod up;
pub mod volume;
