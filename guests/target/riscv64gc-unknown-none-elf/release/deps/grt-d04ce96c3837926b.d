/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/grt-d04ce96c3837926b.d: grt/src/lib.rs grt/src/arch/mod.rs grt/src/arch/riscv64.rs grt/src/arch/riscv64_irq.rs grt/src/bench.rs grt/src/check.rs grt/src/console.rs grt/src/hc.rs grt/src/irq.rs grt/src/layout.rs grt/src/mmio.rs grt/src/smp.rs grt/src/trap.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libgrt-d04ce96c3837926b.rmeta: grt/src/lib.rs grt/src/arch/mod.rs grt/src/arch/riscv64.rs grt/src/arch/riscv64_irq.rs grt/src/bench.rs grt/src/check.rs grt/src/console.rs grt/src/hc.rs grt/src/irq.rs grt/src/layout.rs grt/src/mmio.rs grt/src/smp.rs grt/src/trap.rs Cargo.toml

grt/src/lib.rs:
grt/src/arch/mod.rs:
grt/src/arch/riscv64.rs:
grt/src/arch/riscv64_irq.rs:
grt/src/bench.rs:
grt/src/check.rs:
grt/src/console.rs:
grt/src/hc.rs:
grt/src/irq.rs:
grt/src/layout.rs:
grt/src/mmio.rs:
grt/src/smp.rs:
grt/src/trap.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
