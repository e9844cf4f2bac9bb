/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/hypercall-ecd5100cc7ce00ae.d: hypercall/src/main.rs Cargo.toml

/work/main/guests/target/riscv64gc-unknown-none-elf/release/deps/libhypercall-ecd5100cc7ce00ae.rmeta: hypercall/src/main.rs Cargo.toml

hypercall/src/main.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
