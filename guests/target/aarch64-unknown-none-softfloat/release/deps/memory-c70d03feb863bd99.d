/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/memory-c70d03feb863bd99.d: memory/src/main.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libmemory-c70d03feb863bd99.rmeta: memory/src/main.rs Cargo.toml

memory/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
