/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/hello-0dbe6424391cd5c5.d: hello/src/main.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libhello-0dbe6424391cd5c5.rmeta: hello/src/main.rs Cargo.toml

hello/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
