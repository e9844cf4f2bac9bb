//! Guest device trees generated from a VM description (CPUs, memory, interrupt controller, timer, UARTs, chosen).

#![no_std]
