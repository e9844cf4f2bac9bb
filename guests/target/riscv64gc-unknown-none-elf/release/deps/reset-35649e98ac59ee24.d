/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/reset-35649e98ac59ee24.d: reset/src/main.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libreset-35649e98ac59ee24.rmeta: reset/src/main.rs Cargo.toml

reset/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
