//! Virtual GIC (v2 and v3): the distributor and redistributor register model and list-register management, portable and host-tested.

#![no_std]
