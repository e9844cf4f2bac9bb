//! The VM description parser and validation (`axvmconfig`): any text, parsed, validated
//! alone and beside a copy of itself; every error formatted.
#![no_main]

use std::collections::BTreeMap;

use axvmconfig::{validate_many, ValidateContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match axvmconfig::from_toml(text) {
        Ok(config) => config,
        Err(err) => {
            let _ = err.to_string();
            return;
        }
    };
    // Sizes for the images it names, so the load-address checks see real extents.
    let k = &config.kernel;
    let names = [Some(k.image.as_str())]
        .into_iter()
        .chain([k.initrd.as_ref().map(|i| i.image.as_str())])
        .chain([k.dtb.as_ref().and_then(|d| d.image.as_deref())])
        .flatten();
    let image_sizes: BTreeMap<String, u64> = names
        .enumerate()
        .map(|(i, name)| (name.to_string(), (i as u64 + 1) << 20))
        .collect();
    for ctx in [
        ValidateContext::default(),
        ValidateContext {
            pcpu_count: Some(4),
            image_sizes,
        },
    ] {
        if let Err(problems) = config.validate(&ctx) {
            assert!(!problems.is_empty(), "validate failed with no problem");
            for p in problems {
                let _ = p.to_string();
            }
        }
    }
    let twins = [config.clone(), config];
    // The same id twice is always a problem.
    let problems = validate_many(&twins).expect_err("two VMs with one id accepted");
    for p in problems {
        let _ = p.to_string();
    }
});
