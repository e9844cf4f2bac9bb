/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/memory-39c3e0d4867c80e1.d: memory/src/main.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libmemory-39c3e0d4867c80e1.rmeta: memory/src/main.rs Cargo.toml

memory/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
