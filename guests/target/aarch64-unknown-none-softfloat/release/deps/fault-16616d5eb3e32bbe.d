/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/fault-16616d5eb3e32bbe.d: fault/src/main.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libfault-16616d5eb3e32bbe.rmeta: fault/src/main.rs Cargo.toml

fault/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
