//! Virtual RISC-V PLIC: priorities, pending, per-context enables and thresholds, claim/complete.

#![no_std]
