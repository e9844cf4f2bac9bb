/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/sysreg-7d85e647947d9747.d: sysreg/src/main.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libsysreg-7d85e647947d9747.rmeta: sysreg/src/main.rs Cargo.toml

sysreg/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
