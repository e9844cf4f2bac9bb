/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/fault-17945420c317a3ba.d: fault/src/main.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libfault-17945420c317a3ba.rmeta: fault/src/main.rs Cargo.toml

fault/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
