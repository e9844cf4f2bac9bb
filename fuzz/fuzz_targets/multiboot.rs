//! The x86 firmware hand-over parsers of `axconfig`: any bytes as the physical memory a
//! multiboot loader left (the first four bytes pick where the information structure is),
//! and as the DSDT's AML searched for the S5 sleep type.

use axconfig::aml::s5_sleep_type;
use axconfig::multiboot;

/// Runs one input.
pub fn run(data: &[u8]) {
    let _ = s5_sleep_type(data);
    let Some((head, memory)) = data.split_first_chunk::<4>() else {
        return;
    };
    let at = u32::from_le_bytes(*head) as usize % memory.len().max(1);
    let read = |addr: usize, len: usize| memory.get(addr..addr.checked_add(len)?);
    match multiboot::parse(at, read) {
        Ok(mb) => {
            assert!(!mb.memory.is_empty(), "parsed without memory");
            assert!(
                mb.memory.windows(2).all(|w| w[0].start <= w[1].start),
                "memory not sorted"
            );
            assert!(mb.cmdline.len() <= 256);
            assert!(mb.extent.contains(at), "the extent misses the structure");
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
}
