/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/hypercall-76e8eb08d6246dea.d: hypercall/src/main.rs Cargo.toml

/work/main/guests/target/aarch64-unknown-none-softfloat/release/deps/libhypercall-76e8eb08d6246dea.rmeta: hypercall/src/main.rs Cargo.toml

hypercall/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
