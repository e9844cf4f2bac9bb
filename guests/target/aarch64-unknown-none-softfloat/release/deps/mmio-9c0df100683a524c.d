/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/mmio-9c0df100683a524c.d: mmio/src/main.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libmmio-9c0df100683a524c.rmeta: mmio/src/main.rs Cargo.toml

mmio/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
