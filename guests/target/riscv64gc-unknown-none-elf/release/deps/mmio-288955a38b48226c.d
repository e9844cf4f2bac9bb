/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/mmio-288955a38b48226c.d: mmio/src/main.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libmmio-288955a38b48226c.rmeta: mmio/src/main.rs Cargo.toml

mmio/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
