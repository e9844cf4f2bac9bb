/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/hello-0b041887f7c03c36.d: hello/src/main.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libhello-0b041887f7c03c36.rmeta: hello/src/main.rs Cargo.toml

hello/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
