//! The architecture-specific half of grt: entry, vectors, console UART, power, hypercalls,
//! and (`irq_hw`) the interrupt controller, timer and IPIs.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;
#[cfg(target_arch = "aarch64")]
#[path = "aarch64_irq.rs"]
pub mod irq_hw;

#[cfg(target_arch = "riscv64")]
mod riscv64;
#[cfg(target_arch = "riscv64")]
pub use riscv64::*;
#[cfg(target_arch = "riscv64")]
#[path = "riscv64_irq.rs"]
pub mod irq_hw;

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;
#[cfg(target_arch = "x86_64")]
#[path = "x86_64_irq.rs"]
pub mod irq_hw;

#[cfg(not(any(
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "x86_64"
)))]
compile_error!("grt supports aarch64, riscv64 and x86_64 guests only");
