/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/smp-bf3871c4d43e7af5.d: smp/src/main.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libsmp-bf3871c4d43e7af5.rmeta: smp/src/main.rs Cargo.toml

smp/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
