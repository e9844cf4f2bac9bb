/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/bench-7b70126aadbd6488.d: bench/src/main.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libbench-7b70126aadbd6488.rmeta: bench/src/main.rs Cargo.toml

bench/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
