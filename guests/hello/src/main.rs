//! The smallest test guest: prints a greeting and its pass marker, then (returning from
//! `main`) powers the VM off.
#![no_std]
#![no_main]

#[no_mangle]
fn main() {
    grt::println!("Hello from {} guest", grt::ARCH);
    grt::pass("hello");
}
