//! Synchronization.

pub use axtask::WaitQueue;
