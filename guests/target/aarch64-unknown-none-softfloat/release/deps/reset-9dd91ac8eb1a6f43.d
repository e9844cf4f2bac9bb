/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/reset-9dd91ac8eb1a6f43.d: reset/src/main.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libreset-9dd91ac8eb1a6f43.rmeta: reset/src/main.rs Cargo.toml

reset/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
