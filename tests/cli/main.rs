//! The one integration-test binary: runs the real `rollproof` binary on fixtures and on inputs
//! built in temporary folders.

mod bad_input;
mod canary;
mod conventions;
mod determinism;
mod fixtures;
mod formats;
mod hostile;
mod init;
mod layout;
mod malformed;
mod properties;
mod real_logs;
mod receipts;
mod recipes;
mod reference;
mod reports;
mod s3;
mod scale_out;
mod snapshots;
mod statistics;
mod util;
