//! The one fact the hypervisor reads from ACPI's AML: the S5 (soft off) sleep type, which
//! goes into the PM1 control registers to power a PC off.

/// The first value of the `_S5_` package in the DSDT's AML (`Name (_S5, Package () { typ,
/// ... })`): after the name, PackageOp (0x12), the package length (1 to 4 bytes, the count of
/// extra bytes in bits 6-7 of the first), the element count, then the value as BytePrefix
/// (0x0A) and a byte, ZeroOp (0x00) or OneOp (0x01). `None` when there is no such package.
pub fn s5_sleep_type(aml: &[u8]) -> Option<u8> {
    let at = aml.windows(4).position(|w| w == b"_S5_")? + 4;
    let rest = aml.get(at..)?;
    if *rest.first()? != 0x12 {
        return None;
    }
    let len_bytes = usize::from(rest.get(1)? >> 6);
    let value = rest.get(2 + len_bytes + 1..)?;
    match *value.first()? {
        0x0a => value.get(1).copied(),
        0x00 => Some(0),
        0x01 => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_forms() {
        // NameOp "_S5_" PackageOp len=6 count=4 Zero Zero Zero Zero (QEMU's).
        let qemu = b"\x10\x08\\_S5_\x12\x06\x04\x00\x00\x00\x00";
        assert_eq!(s5_sleep_type(qemu), Some(0));
        // BytePrefix 5, with a two-byte package length.
        let bytes = b"xx\x08_S5_\x12\x40\x01\x04\x0a\x05\x0a\x05\x00\x00";
        assert_eq!(s5_sleep_type(bytes), Some(5));
        assert_eq!(s5_sleep_type(b"\x08_S5_\x12\x06\x04\x01"), Some(1));
        // No package, an unknown element, or cut short.
        assert_eq!(s5_sleep_type(b"\x08_S5_\x0a\x05"), None);
        assert_eq!(s5_sleep_type(b"\x08_S5_\x12\x06\x04\x0b\x05\x00"), None);
        assert_eq!(s5_sleep_type(b"\x08_S5_\x12\x06\x04\x0a"), None);
        assert_eq!(s5_sleep_type(b"\x08_S5_\x12"), None);
        assert_eq!(s5_sleep_type(b"no sleep states"), None);
    }
}
