//! Arbitrary bytes into the vault envelope parser: it must return a value or an error, never
//! panic; what it accepts must survive `to_text` and a second parse unchanged; decrypting it must
//! not panic either (a wrong password is an error, bad padding behind a good HMAC too).
//!
//! The same bytes are also hex-wrapped behind a valid header, so that the fuzzer reaches the inner
//! layer (salt, HMAC, ciphertext) and decryption without having to find the outer hex encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_tool::format;

fn check(data: &[u8]) {
    let _ = format::is_encrypted(data);
    let Ok(envelope) = format::parse_envelope(data) else {
        return;
    };
    let text = envelope.to_text();
    let again = format::parse_envelope(text.as_bytes()).expect("our own output parses");
    assert_eq!(again, envelope, "parse(to_text(parse(x))) == parse(x)");
    assert!(text.lines().skip(1).all(|l| l.len() <= format::LINE_WIDTH));
    let _ = envelope.decrypt(b"fuzz");
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut wrapped = b"$ANSIBLE_VAULT;1.2;AES256;fuzz\n".to_vec();
    for (i, byte) in data.iter().enumerate() {
        if i > 0 && i % 40 == 0 {
            wrapped.push(b'\n');
        }
        wrapped.extend(format!("{byte:02x}").bytes());
    }
    check(&wrapped);
});
