//! The hypervisor's runtime and standard library.
//!
//! `axstd` owns what every image needs once: the global allocator, the panic handler, the
//! logger, and the runtime entry points `axhal` calls. The application (the `axvisor` binary,
//! built `#![no_main]`) provides `#[no_mangle] fn main()`, which runs as the boot CPU's first
//! task once memory, logging and tasks are up; when it returns, that CPU goes idle.
//!
//! Modules: [`io`] (`print!`/`println!`), [`mem`], [`thread`], [`sync`], [`time`], [`smp`],
//! [`os`].
#![no_std]

extern crate alloc;

pub mod io;
pub mod mem;
pub mod os;
pub mod smp;
pub mod sync;
pub mod thread;
pub mod time;

mod rt;

pub use alloc::{boxed, format, string, sync as arc, vec};
