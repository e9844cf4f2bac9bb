/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/grt-5505cda621e710fa.d: grt/src/lib.rs grt/src/arch/mod.rs grt/src/arch/aarch64.rs grt/src/arch/aarch64_irq.rs grt/src/bench.rs grt/src/check.rs grt/src/console.rs grt/src/hc.rs grt/src/irq.rs grt/src/layout.rs grt/src/mmio.rs grt/src/smp.rs grt/src/trap.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libgrt-5505cda621e710fa.rmeta: grt/src/lib.rs grt/src/arch/mod.rs grt/src/arch/aarch64.rs grt/src/arch/aarch64_irq.rs grt/src/bench.rs grt/src/check.rs grt/src/console.rs grt/src/hc.rs grt/src/irq.rs grt/src/layout.rs grt/src/mmio.rs grt/src/smp.rs grt/src/trap.rs Cargo.toml

grt/src/lib.rs:
grt/src/arch/mod.rs:
grt/src/arch/aarch64.rs:
grt/src/arch/aarch64_irq.rs:
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
