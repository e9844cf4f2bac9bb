/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/sysreg-dea97c9ed5944fc4.d: sysreg/src/main.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libsysreg-dea97c9ed5944fc4.rmeta: sysreg/src/main.rs Cargo.toml

sysreg/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
