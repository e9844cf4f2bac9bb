/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/bench-dbf142118109d9c8.d: bench/src/main.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libbench-dbf142118109d9c8.rmeta: bench/src/main.rs Cargo.toml

bench/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
