/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/smp-c0260659c9350e08.d: smp/src/main.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libsmp-c0260659c9350e08.rmeta: smp/src/main.rs Cargo.toml

smp/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
