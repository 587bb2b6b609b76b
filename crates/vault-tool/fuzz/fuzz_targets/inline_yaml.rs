//! Arbitrary text into the YAML functions that find and decrypt inline `!vault` values: they
//! must return a value or an error, never panic, and what `reveal` prints must parse to what
//! `decrypt_values` returns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_tool::password::{Keyring, Secret};
use vault_tool::yaml;
use zeroize::Zeroizing;

fuzz_target!(|text: &str| {
    let keyring = Keyring::new(vec![
        Secret::new("default", Zeroizing::new(b"fuzz".to_vec()), "fuzz").expect("a valid secret"),
    ]);
    let _ = yaml::has_inline_values(text);
    let structural = yaml::decrypt_values(text, &keyring);
    if let Ok(revealed) = yaml::reveal(text, &keyring) {
        let reparsed: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&revealed).expect("reveal prints YAML");
        assert_eq!(
            Some(&reparsed),
            structural.as_ref().ok(),
            "reveal and decrypt_values agree"
        );
    }
});
