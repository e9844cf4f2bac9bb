//! Memory allocation for the hypervisor: physical frames and the kernel heap.
//!
//! [`FrameAllocator`] hands out 4 KiB frames (contiguous runs, aligned as asked) from the free
//! RAM ranges found at boot, tracking them with a bitmap carved from each range's start.
//! [`Allocator`] combines it with a buddy heap that grows by taking frames when it runs out,
//! and implements [`GlobalAlloc`] so the runtime can make it the `#[global_allocator]`.
//!
//! Both locks are taken with interrupts masked through the [`IrqGuard`] the runtime supplies,
//! so an interrupt handler on the same CPU can never deadlock on them.
#![no_std]

#[cfg(test)]
extern crate std;

mod frame;
mod heap;

pub use frame::{FrameAllocator, FrameError};
pub use heap::{Allocator, HeapStats, IrqGuard, NoIrqGuard};

/// Size of one physical frame.
pub const FRAME_SIZE: usize = axconfig::memmap::PAGE_SIZE;
