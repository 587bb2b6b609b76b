//! The ansible-vault format, versions 1.1 and 1.2, byte-compatible with ansible-core.
//!
//! A vault is ASCII text:
//!
//! ```text
//! $ANSIBLE_VAULT;1.1;AES256                 (1.1: no vault id)
//! $ANSIBLE_VAULT;1.2;AES256;prod            (1.2: with the vault id "prod")
//! 3038623766...   lines of at most 80 hex digits, the file ending with one newline
//! ```
//!
//! The body is hex-encoded twice: `hex(hex(salt) "\n" hex(hmac) "\n" hex(ciphertext))`. The keys
//! come from PBKDF2-HMAC-SHA256 over the password with the 32-byte random salt, 10,000
//! iterations, 80 bytes: the AES-256 key, the HMAC key, and the initial 128-bit big-endian
//! counter. The plaintext is padded with PKCS#7 to 16 bytes (although CTR mode needs no padding)
//! and encrypted with AES-256-CTR; the HMAC-SHA256 covers the ciphertext only.
//!
//! The vault id (label) is not authenticated: it only says which password to try first.
//!
//! Parsing follows ansible's `parse_vaulttext_envelope` (lines split on `\n`, `\r\n` or `\r`,
//! header fields stripped of whitespace, empty body lines ignored, hex digits of either case),
//! but reports what is wrong and where, and checks what ansible only finds out later (the HMAC
//! length, the ciphertext length) before any password is tried. The HMAC is checked in constant
//! time before anything is decrypted, and every padding byte is checked.
//!
//! Reference: ansible-core 2.14, `lib/ansible/parsing/vault/__init__.py`.

use aes::Aes256;
use ctr::cipher::{KeyIvInit as _, StreamCipher as _};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, FormatError, Result};

/// The start of every vault, and the first field of its header.
pub const MAGIC: &str = "$ANSIBLE_VAULT";
/// The only cipher ansible-vault has.
pub const CIPHER_NAME: &str = "AES256";
/// The vault id ansible gives a password that has none; a vault written with it is format 1.1.
pub const DEFAULT_LABEL: &str = "default";
/// PBKDF2 iterations (fixed by the format).
pub const PBKDF2_ITERATIONS: u32 = 10_000;
/// Bytes of salt in a vault written here (ansible's length; any length is read).
pub const SALT_LEN: usize = 32;
/// Hex digits per body line.
pub const LINE_WIDTH: usize = 80;

const KEY_LEN: usize = 32;
const IV_LEN: usize = 16;
const HMAC_LEN: usize = 32;
const BLOCK_LEN: usize = 16;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// The format version in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `1.1`: no vault id.
    V1_1,
    /// `1.2`: a vault id follows the cipher name.
    V1_2,
}

impl Version {
    /// `1.1` or `1.2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_1 => "1.1",
            Self::V1_2 => "1.2",
        }
    }
}

/// A parsed vault: header fields and the three binary parts of the body.
///
/// Made by [`parse_envelope`] (which checks the lengths of the parts) or by [`encrypt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    version: Version,
    label: Option<String>,
    salt: Vec<u8>,
    hmac: [u8; HMAC_LEN],
    ciphertext: Vec<u8>,
}

impl Envelope {
    /// The format version in the header.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The vault id in the header, if any. ansible reads a fourth header field whatever the
    /// version, and so does this.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The label ansible matches passwords against: the header's, or `default`.
    pub fn effective_label(&self) -> &str {
        self.label.as_deref().unwrap_or(DEFAULT_LABEL)
    }

    /// The length of the ciphertext (the padded plaintext).
    pub fn ciphertext_len(&self) -> usize {
        self.ciphertext.len()
    }

    /// Decrypts with one password: checks the HMAC (in constant time) before decrypting, then
    /// checks and removes the padding.
    ///
    /// # Errors
    /// [`Error::WrongPassword`] when the HMAC does not match (without naming a vault id: the
    /// caller knows which it tried); [`Error::Malformed`] when the padding is invalid although the
    /// HMAC matched (the vault was written by a broken encryptor).
    pub fn decrypt(&self, password: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let keys = Keys::derive(password, &self.salt);
        if !keys.verify(&self.ciphertext, &self.hmac) {
            return Err(Error::WrongPassword {
                input: None,
                tried: Vec::new(),
            });
        }
        let mut plaintext = Zeroizing::new(self.ciphertext.clone());
        keys.apply_keystream(&mut plaintext);
        let len = unpadded_len(&plaintext).map_err(Error::malformed)?;
        plaintext.truncate(len);
        Ok(plaintext)
    }

    /// The vault as text: header, 80-column hex lines, and a final newline, exactly as ansible
    /// writes it.
    ///
    /// # Panics
    /// Never: the text is the header, a label that is a `str`, and hex digits.
    pub fn to_text(&self) -> String {
        let mut inner =
            Vec::with_capacity(2 * (self.salt.len() + HMAC_LEN + self.ciphertext.len()) + 2);
        push_hex(&mut inner, &self.salt);
        inner.push(b'\n');
        push_hex(&mut inner, &self.hmac);
        inner.push(b'\n');
        push_hex(&mut inner, &self.ciphertext);
        let mut outer = Vec::with_capacity(2 * inner.len());
        push_hex(&mut outer, &inner);

        let mut text = format!("{MAGIC};{};{CIPHER_NAME}", self.version.as_str()).into_bytes();
        if let Some(label) = &self.label {
            text.push(b';');
            text.extend_from_slice(label.as_bytes());
        }
        text.reserve(outer.len() + outer.len() / LINE_WIDTH + 2);
        text.push(b'\n');
        for line in outer.chunks(LINE_WIDTH) {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        String::from_utf8(text).expect("a header, a UTF-8 label and hex digits are UTF-8")
    }
}

/// True when `data` starts with the vault header magic, as ansible's `is_encrypted` decides.
pub fn is_encrypted(data: &[u8]) -> bool {
    data.starts_with(MAGIC.as_bytes())
}

/// Encrypts `plaintext` with `password` into a vault (text ending with a newline).
///
/// The header is format 1.1 when `label` is `None` or `default`, 1.2 with the label otherwise,
/// as ansible writes it. The salt is 32 random bytes from the operating system's generator.
///
/// # Errors
/// [`Error::AlreadyEncrypted`] when the plaintext is itself a vault (ansible refuses it too),
/// [`Error::InvalidLabel`] for a label the header cannot carry, [`Error::PasswordSource`] for an
/// empty password.
pub fn encrypt(plaintext: &[u8], password: &[u8], label: Option<&str>) -> Result<String> {
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt[..]);
    encrypt_with_salt(plaintext, password, label, &salt)
}

/// [`encrypt`] with a chosen salt, for tests that compare with known output. Never reuse a salt.
pub(crate) fn encrypt_with_salt(
    plaintext: &[u8],
    password: &[u8],
    label: Option<&str>,
    salt: &[u8],
) -> Result<String> {
    if is_encrypted(plaintext) {
        return Err(Error::AlreadyEncrypted { input: None });
    }
    if password.is_empty() {
        return Err(Error::PasswordSource {
            origin: "the caller".to_owned(),
            message: "the password is empty".to_owned(),
            cause: None,
        });
    }
    let (version, label) = match label {
        None => (Version::V1_1, None),
        Some(l) if l == DEFAULT_LABEL => (Version::V1_1, None),
        Some(l) => {
            validate_label(l)?;
            (Version::V1_2, Some(l.to_owned()))
        }
    };
    let keys = Keys::derive(password, salt);
    let pad = BLOCK_LEN - plaintext.len() % BLOCK_LEN;
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + pad));
    buf.extend_from_slice(plaintext);
    // `pad` is 1..=16, so it fits in a byte.
    buf.resize(plaintext.len() + pad, u8::try_from(pad).unwrap_or(16));
    keys.apply_keystream(&mut buf);
    let envelope = Envelope {
        version,
        label,
        salt: salt.to_vec(),
        hmac: keys.mac(&buf),
        ciphertext: buf.to_vec(),
    };
    Ok(envelope.to_text())
}

/// Decrypts a vault with one password: [`parse_envelope`] then [`Envelope::decrypt`].
///
/// # Errors
/// [`Error::Malformed`] (what and where), [`Error::WrongPassword`].
pub fn decrypt(data: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    parse_envelope(data)?.decrypt(password)
}

/// Checks that a vault id can be written into a header and read back unchanged.
///
/// # Errors
/// [`Error::InvalidLabel`] for an empty label, one containing `;` or a line break, or one with
/// surrounding whitespace (ansible strips it when reading).
pub fn validate_label(label: &str) -> Result<()> {
    let reason = if label.is_empty() {
        "it is empty"
    } else if label.contains(';') {
        "the character ';' is not allowed in vault ids"
    } else if label.contains(['\n', '\r']) {
        "a vault id cannot contain a line break"
    } else if label.trim() != label {
        "a vault id cannot start or end with whitespace"
    } else {
        return Ok(());
    };
    Err(Error::InvalidLabel {
        label: label.to_owned(),
        reason,
    })
}

/// Parses a vault: its header, its hex body and the three parts inside, checking each.
///
/// Accepts what ansible-core accepts: `\n`, `\r\n` or `\r` line ends, whitespace around header
/// fields, empty lines and lines of any length in the body, hex digits of either case, a
/// trailing newline or none. Refuses, naming the line and column: a header that is not
/// `$ANSIBLE_VAULT;1.1;AES256` or `$ANSIBLE_VAULT;1.2;AES256;LABEL`, anything but hex digits in
/// the body, an odd number of digits, an inner layer that is not three hex lines, an HMAC that is
/// not 32 bytes, an empty salt, and a ciphertext that is not a positive multiple of 16 bytes.
///
/// # Errors
/// [`Error::Malformed`], whose [`FormatError`] says what is wrong and where.
pub fn parse_envelope(data: &[u8]) -> Result<Envelope> {
    let lines = split_lines(data);
    let Some(&header) = lines.first() else {
        return Err(Error::malformed(FormatError::new("empty input")));
    };
    let (version, label) = parse_header(header).map_err(Error::malformed)?;
    let body = Body { lines: &lines[1..] };
    let outer = body.decode().map_err(Error::malformed)?;

    let mut parts = outer.splitn(3, |&b| b == b'\n');
    let (Some(salt_hex), Some(hmac_hex), Some(ct_hex)) = (parts.next(), parts.next(), parts.next())
    else {
        let found = outer.split(|&b| b == b'\n').count();
        return Err(Error::malformed(FormatError::new(format!(
            "the decoded body has {found} line(s); expected 3 (salt, HMAC, ciphertext in hex)"
        ))));
    };
    let hmac_start = salt_hex.len() + 1;
    let ct_start = hmac_start + hmac_hex.len() + 1;
    let salt = body.decode_part("salt", salt_hex, 0)?;
    let hmac = body.decode_part("HMAC", hmac_hex, hmac_start)?;
    let ciphertext = body.decode_part("ciphertext", ct_hex, ct_start)?;

    if salt.is_empty() {
        return Err(Error::malformed(FormatError::new("the salt is empty")));
    }
    let hmac: [u8; HMAC_LEN] = hmac.as_slice().try_into().map_err(|_| {
        Error::malformed(FormatError::new(format!(
            "the HMAC is {} bytes; HMAC-SHA256 has {HMAC_LEN}",
            hmac.len()
        )))
    })?;
    if ciphertext.is_empty() || ciphertext.len() % BLOCK_LEN != 0 {
        return Err(Error::malformed(FormatError::new(format!(
            "the ciphertext is {} bytes, not a positive multiple of {BLOCK_LEN} (the AES block size); the file is truncated or damaged",
            ciphertext.len()
        ))));
    }
    Ok(Envelope {
        version,
        label,
        salt,
        hmac,
        ciphertext,
    })
}

/// Splits like Python's `bytes.splitlines`: on `\n`, `\r\n` or `\r`, without a final empty line.
fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' => {
                lines.push(&data[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&data[start..i]);
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < data.len() {
        lines.push(&data[start..]);
    }
    lines
}

const HEADER_HELP: &str =
    "expected `$ANSIBLE_VAULT;1.1;AES256` or `$ANSIBLE_VAULT;1.2;AES256;LABEL`";

fn parse_header(line: &[u8]) -> Result<(Version, Option<String>), FormatError> {
    let text = std::str::from_utf8(line)
        .map_err(|e| FormatError::at(1, e.valid_up_to() + 1, "the header is not UTF-8"))?;
    // Fields with their 1-based columns, stripped of whitespace as ansible does.
    let mut fields = Vec::new();
    let mut offset = 0;
    for raw in text.split(';') {
        let lead = raw.len() - raw.trim_start().len();
        fields.push((raw.trim(), offset + lead + 1));
        offset += raw.len() + 1;
    }
    let (magic, _) = fields[0];
    if magic != MAGIC {
        return Err(FormatError::at(
            1,
            1,
            format!("the header does not start with `{MAGIC};`; {HEADER_HELP}"),
        ));
    }
    if fields.len() < 3 {
        return Err(FormatError::at(
            1,
            text.len() + 1,
            format!("the header has {} field(s); {HEADER_HELP}", fields.len()),
        ));
    }
    if fields.len() > 4 {
        return Err(FormatError::at(
            1,
            fields[4].1,
            format!(
                "the header has {} fields; {HEADER_HELP} (a vault id cannot contain `;`)",
                fields.len()
            ),
        ));
    }
    let (version, column) = fields[1];
    let version = match version {
        "1.1" => Version::V1_1,
        "1.2" => Version::V1_2,
        other => {
            return Err(FormatError::at(
                1,
                column,
                format!("unsupported format version `{other}` (1.1 and 1.2 are supported)"),
            ));
        }
    };
    let (cipher, column) = fields[2];
    if cipher != CIPHER_NAME {
        return Err(FormatError::at(
            1,
            column,
            format!("unsupported cipher `{cipher}` (only {CIPHER_NAME} exists)"),
        ));
    }
    let label = fields
        .get(3)
        .map(|(l, _)| *l)
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    Ok((version, label))
}

/// The hex lines after the header, with what is needed to point at a position in them.
struct Body<'a> {
    lines: &'a [&'a [u8]],
}

impl Body<'_> {
    /// Decodes the outer hex layer.
    fn decode(&self) -> Result<Vec<u8>, FormatError> {
        let digits: usize = self.lines.iter().map(|l| l.len()).sum();
        let mut out = Vec::with_capacity(digits / 2);
        // A digit left over from a line of odd length pairs with the next line's first.
        let mut pending: Option<u8> = None;
        let mut last = (2, 1);
        for (n, line) in self.lines.iter().enumerate() {
            let invalid = |col: usize| {
                FormatError::at(
                    n + 2,
                    col + 1,
                    format!("{} is not a hex digit", show_byte(line[col])),
                )
            };
            let mut rest: &[u8] = line;
            let mut offset = 0;
            if let (Some(high), Some(&first)) = (pending, line.first()) {
                let low = HEX_VALUE[usize::from(first)];
                if low > 15 {
                    return Err(invalid(0));
                }
                out.push(high << 4 | low);
                pending = None;
                rest = &line[1..];
                offset = 1;
            }
            let pairs = rest.chunks_exact(2);
            let tail = pairs.remainder();
            for (i, pair) in pairs.enumerate() {
                let (high, low) = (
                    HEX_VALUE[usize::from(pair[0])],
                    HEX_VALUE[usize::from(pair[1])],
                );
                if (high | low) > 15 {
                    let col = offset + 2 * i + usize::from(high <= 15);
                    return Err(invalid(col));
                }
                out.push(high << 4 | low);
            }
            if let Some(&odd) = tail.first() {
                let value = HEX_VALUE[usize::from(odd)];
                if value > 15 {
                    return Err(invalid(line.len() - 1));
                }
                pending = Some(value);
            }
            if !line.is_empty() {
                last = (n + 2, line.len());
            }
        }
        if pending.is_some() {
            return Err(FormatError::at(
                last.0,
                last.1,
                "odd number of hex digits in the body; the file is truncated or damaged",
            ));
        }
        if out.is_empty() {
            return Err(FormatError::at(2, 1, "no data after the header"));
        }
        Ok(out)
    }

    /// Decodes one part of the inner layer; `start` is its offset in the decoded outer layer.
    fn decode_part(&self, name: &str, hex: &[u8], start: usize) -> Result<Vec<u8>> {
        let invalid = |i: usize| {
            let (line, column) = self.locate(start + i);
            Error::malformed(FormatError::at(
                line,
                column,
                format!(
                    "the {name}: {} (decoded from the hex digits here) is not a hex digit",
                    show_byte(hex[i])
                ),
            ))
        };
        let pairs = hex.chunks_exact(2);
        let odd = pairs.remainder().first().copied();
        let mut out = Vec::with_capacity(hex.len() / 2);
        for (i, pair) in pairs.enumerate() {
            let (high, low) = (
                HEX_VALUE[usize::from(pair[0])],
                HEX_VALUE[usize::from(pair[1])],
            );
            if (high | low) > 15 {
                return Err(invalid(2 * i + usize::from(high <= 15)));
            }
            out.push(high << 4 | low);
        }
        if let Some(odd) = odd {
            if HEX_VALUE[usize::from(odd)] > 15 {
                return Err(invalid(hex.len() - 1));
            }
            return Err(Error::malformed(FormatError::new(format!(
                "the {name} has an odd number of hex digits ({}); the file is truncated or damaged",
                hex.len()
            ))));
        }
        Ok(out)
    }

    /// The line and column of the first of the two hex digits that encode decoded byte `index`.
    fn locate(&self, index: usize) -> (usize, usize) {
        let mut digit = index * 2;
        for (n, line) in self.lines.iter().enumerate() {
            if digit < line.len() {
                return (n + 2, digit + 1);
            }
            digit -= line.len();
        }
        (self.lines.len() + 1, 1)
    }
}

/// The value of each byte as a hex digit (either case), or 0xff for anything else.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i: u8 = 0;
    while i < 10 {
        table[(b'0' + i) as usize] = i;
        i += 1;
    }
    let mut i: u8 = 0;
    while i < 6 {
        table[(b'a' + i) as usize] = 10 + i;
        table[(b'A' + i) as usize] = 10 + i;
        i += 1;
    }
    table
};

/// Appends the lower-case hex digits of `data`, as Python's `hexlify` writes them.
fn push_hex(out: &mut Vec<u8>, data: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 * data.len());
    for &byte in data {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
}

fn show_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("`{}`", char::from(byte))
    } else {
        format!("byte 0x{byte:02x}")
    }
}

/// The length of the plaintext once its PKCS#7 padding is removed, checking every pad byte.
fn unpadded_len(data: &[u8]) -> Result<usize, FormatError> {
    let bad = |detail: String| {
        FormatError::new(format!(
            "the HMAC matches but the decrypted data has invalid PKCS#7 padding ({detail}); the vault was written by a broken encryptor"
        ))
    };
    let Some(&last) = data.last() else {
        return Err(bad("no data".to_owned()));
    };
    let pad = usize::from(last);
    if pad == 0 || pad > BLOCK_LEN || pad > data.len() {
        return Err(bad(format!("last byte 0x{last:02x} is not a pad length")));
    }
    if let Some(pos) = data[data.len() - pad..].iter().position(|&b| b != last) {
        let from_end = pad - pos;
        return Err(bad(format!(
            "byte {from_end} from the end is 0x{:02x}, expected 0x{last:02x}",
            data[data.len() - from_end]
        )));
    }
    Ok(data.len() - pad)
}

/// The 80 bytes PBKDF2 derives: AES key, HMAC key, initial counter. Wiped when dropped.
struct Keys(Zeroizing<[u8; 2 * KEY_LEN + IV_LEN]>);

impl Keys {
    fn derive(password: &[u8], salt: &[u8]) -> Self {
        let mut out = Zeroizing::new([0u8; 2 * KEY_LEN + IV_LEN]);
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, PBKDF2_ITERATIONS, out.as_mut_slice());
        Self(out)
    }

    fn hmac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.0[KEY_LEN..2 * KEY_LEN])
            .expect("HMAC accepts any key length")
    }

    fn mac(&self, ciphertext: &[u8]) -> [u8; HMAC_LEN] {
        let mut mac = self.hmac();
        mac.update(ciphertext);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time comparison (`verify_slice` uses `subtle`).
    fn verify(&self, ciphertext: &[u8], expected: &[u8]) -> bool {
        let mut mac = self.hmac();
        mac.update(ciphertext);
        mac.verify_slice(expected).is_ok()
    }

    fn apply_keystream(&self, data: &mut [u8]) {
        let mut cipher = Aes256Ctr::new_from_slices(&self.0[..KEY_LEN], &self.0[2 * KEY_LEN..])
            .expect("key and counter lengths are fixed");
        cipher.apply_keystream(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &[u8] = b"correct horse battery staple";

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/vault")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn password_of(name: &str) -> Vec<u8> {
        // As ansible reads a password file: surrounding whitespace stripped.
        fixture(name).trim_ascii().to_vec()
    }

    fn malformed(data: &[u8]) -> String {
        match parse_envelope(data) {
            Err(e @ Error::Malformed { .. }) => e.to_string(),
            other => panic!("expected a malformed error, got {other:?}"),
        }
    }

    #[test]
    fn fixture_1_1_decrypts_to_the_exact_plaintext() {
        let vault = fixture("v1-vault.yml");
        let envelope = parse_envelope(&vault).unwrap();
        assert_eq!(envelope.version(), Version::V1_1);
        assert_eq!(envelope.label(), None);
        assert_eq!(envelope.effective_label(), DEFAULT_LABEL);
        let plaintext = envelope.decrypt(&password_of("v1-password.txt")).unwrap();
        assert_eq!(*plaintext, fixture("v1-plaintext.yml"));
        // Written back unchanged: same header, line width and final newline as ansible.
        assert_eq!(envelope.to_text().as_bytes(), vault);
    }

    #[test]
    fn fixture_1_2_with_label_and_semicolons_in_the_password() {
        let vault = fixture("v2-vault.yml");
        let envelope = parse_envelope(&vault).unwrap();
        assert_eq!(envelope.version(), Version::V1_2);
        assert_eq!(envelope.label(), Some("prod"));
        let password = fixture("v2-password-prod.txt");
        assert!(password.contains(&b';'));
        assert_eq!(
            *envelope.decrypt(&password).unwrap(),
            fixture("v2-plaintext.yml")
        );
        assert_eq!(envelope.to_text().as_bytes(), vault);
    }

    #[test]
    fn fixture_of_an_empty_file_decrypts_to_nothing() {
        let vault = fixture("v5-vault-empty.vault");
        let envelope = parse_envelope(&vault).unwrap();
        assert_eq!(envelope.ciphertext_len(), 16, "a full block of padding");
        assert!(
            envelope
                .decrypt(&password_of("v1-password.txt"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn round_trips_for_every_length_around_block_boundaries() {
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 100, 1000] {
            let plaintext: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            for label in [None, Some("default"), Some("prod")] {
                let text = encrypt(&plaintext, b"pw", label).unwrap();
                assert!(text.ends_with('\n') && !text.ends_with("\n\n"));
                assert!(text.lines().skip(1).all(|l| l.len() <= LINE_WIDTH));
                let envelope = parse_envelope(text.as_bytes()).unwrap();
                let expected_label = label.filter(|l| *l != DEFAULT_LABEL);
                assert_eq!(envelope.label(), expected_label);
                let header = text.lines().next().unwrap();
                match expected_label {
                    None => assert_eq!(header, "$ANSIBLE_VAULT;1.1;AES256"),
                    Some(l) => assert_eq!(header, format!("$ANSIBLE_VAULT;1.2;AES256;{l}")),
                }
                assert_eq!(*envelope.decrypt(b"pw").unwrap(), plaintext);
            }
        }
    }

    #[test]
    fn hex_is_written_lower_case_and_read_in_either_case() {
        let mut out = Vec::new();
        push_hex(&mut out, &[0x00, 0xff, 0x10, 0xab]);
        assert_eq!(out, b"00ff10ab");
        for (digit, value) in [(b'0', 0), (b'9', 9), (b'a', 10), (b'F', 15)] {
            assert_eq!(HEX_VALUE[usize::from(digit)], value);
        }
        assert!(
            [b'g', b' ', b'\n', 0xff]
                .iter()
                .all(|&b| HEX_VALUE[usize::from(b)] > 15)
        );
    }

    #[test]
    fn the_same_salt_gives_the_same_vault_and_a_new_salt_a_new_one() {
        let salt = [7u8; SALT_LEN];
        let a = encrypt_with_salt(b"x", b"pw", None, &salt).unwrap();
        let b = encrypt_with_salt(b"x", b"pw", None, &salt).unwrap();
        assert_eq!(a, b);
        assert_ne!(
            encrypt(b"x", b"pw", None).unwrap(),
            encrypt(b"x", b"pw", None).unwrap()
        );
    }

    #[test]
    fn wrong_password_is_reported_as_such() {
        let vault = fixture("v1-vault.yml");
        assert!(matches!(
            decrypt(&vault, b"not the password"),
            Err(Error::WrongPassword { .. })
        ));
    }

    #[test]
    fn crlf_line_ends_uppercase_hex_and_blank_lines_are_accepted() {
        let vault = String::from_utf8(fixture("v1-vault.yml")).unwrap();
        let crlf = vault.replace('\n', "\r\n");
        let upper = format!(
            "{}\n\n{}\n",
            vault.lines().next().unwrap(),
            vault
                .lines()
                .skip(1)
                .collect::<Vec<_>>()
                .join("\n")
                .to_uppercase()
        );
        let no_final_newline = vault.trim_end();
        // Lines of odd length: hex digit pairs span line breaks.
        let body: String = vault.lines().skip(1).collect();
        let odd_lines = format!(
            "$ANSIBLE_VAULT;1.1;AES256\n{}\n",
            body.as_bytes()
                .chunks(79)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        );
        for variant in [
            crlf.as_str(),
            upper.as_str(),
            no_final_newline,
            odd_lines.as_str(),
        ] {
            assert_eq!(
                *decrypt(variant.as_bytes(), PASSWORD).unwrap(),
                fixture("v1-plaintext.yml")
            );
        }
        // ansible strips whitespace around header fields.
        let spaced = vault.replacen(
            "$ANSIBLE_VAULT;1.1;AES256",
            "$ANSIBLE_VAULT; 1.1 ;AES256 ",
            1,
        );
        assert!(decrypt(spaced.as_bytes(), PASSWORD).is_ok());
    }

    #[test]
    fn malformed_headers_say_what_and_where() {
        assert_eq!(
            malformed(b"$ANSIBLE_VAULT;1.1\n6162\n"),
            format!("line 1, column 19: the header has 2 field(s); {HEADER_HELP}")
        );
        assert_eq!(
            malformed(b"$ANSIBLE_VAULT;1.3;AES256\n6162\n"),
            "line 1, column 16: unsupported format version `1.3` (1.1 and 1.2 are supported)"
        );
        assert_eq!(
            malformed(b"$ANSIBLE_VAULT;1.1;AES128\n6162\n"),
            "line 1, column 20: unsupported cipher `AES128` (only AES256 exists)"
        );
        assert!(malformed(b"$ANSIBLE_VAULT;1.2;AES256;a;b\n6162\n").contains("column 29"));
        assert!(malformed(b"$ANSIBLE_VAULTX;1.1;AES256\n").starts_with("line 1, column 1:"));
        assert_eq!(malformed(b""), "empty input");
        assert_eq!(
            malformed(b"$ANSIBLE_VAULT;1.1;AES256\n"),
            "line 2, column 1: no data after the header"
        );
    }

    #[test]
    fn malformed_bodies_say_what_and_where() {
        let vault = String::from_utf8(fixture("v1-vault.yml")).unwrap();
        // A non-hex character on the third line, tenth column.
        let mut lines: Vec<String> = vault.lines().map(str::to_owned).collect();
        lines[2].replace_range(9..10, "g");
        let damaged = lines.join("\n");
        assert_eq!(
            malformed(damaged.as_bytes()),
            "line 3, column 10: `g` is not a hex digit"
        );
        // Trailing whitespace (ansible's unhexlify refuses it as well).
        let spaced = vault.replacen('\n', " \n", 2);
        assert!(malformed(spaced.as_bytes()).starts_with("line 2, column 81:"));
        // A truncated file: odd number of digits, then a short ciphertext.
        let cut = &vault[..vault.len() - 2];
        assert!(malformed(cut.as_bytes()).contains("odd number of hex digits"));
        let cut = &vault[..vault.len() - 3];
        assert!(
            malformed(cut.as_bytes()).contains("the ciphertext has an odd number")
                || malformed(cut.as_bytes()).contains("not a positive multiple of 16")
        );
    }

    #[test]
    fn malformed_inner_layers_are_reported() {
        let wrap = |inner: &str| {
            let mut hex = Vec::new();
            push_hex(&mut hex, inner.as_bytes());
            format!(
                "$ANSIBLE_VAULT;1.1;AES256\n{}\n",
                String::from_utf8(hex).unwrap()
            )
        };
        let hmac = "00".repeat(32);
        let ct = "00".repeat(16);
        assert!(
            malformed(wrap("0011\n2233").as_bytes())
                .contains("the decoded body has 2 line(s); expected 3")
        );
        assert!(
            malformed(wrap(&format!("00\n{}\n{ct}", "00".repeat(31))).as_bytes())
                .contains("the HMAC is 31 bytes")
        );
        assert!(
            malformed(wrap(&format!("\n{hmac}\n{ct}")).as_bytes()).contains("the salt is empty")
        );
        assert!(
            malformed(wrap(&format!("00\n{hmac}\n{}", "00".repeat(15))).as_bytes())
                .contains("the ciphertext is 15 bytes")
        );
        // A bad digit in the inner layer points at the outer digits that encode it: `zz` is the
        // 4th decoded byte, so the 7th hex digit of line 2.
        assert_eq!(
            malformed(wrap(&format!("001zz\n{hmac}\n{ct}")).as_bytes()),
            "line 2, column 7: the salt: `z` (decoded from the hex digits here) is not a hex digit"
        );
        assert!(
            malformed(wrap(&format!("001\n{hmac}\n{ct}")).as_bytes())
                .contains("the salt has an odd number of hex digits (3)")
        );
    }

    #[test]
    fn every_padding_byte_is_checked() {
        // Build vaults whose HMAC is right but whose padding is wrong, as a broken encryptor
        // would: encrypt an unpadded buffer directly.
        let salt = [1u8; SALT_LEN];
        let vault_of = |padded: &[u8]| {
            let keys = Keys::derive(b"pw", &salt);
            let mut buf = padded.to_vec();
            keys.apply_keystream(&mut buf);
            Envelope {
                version: Version::V1_1,
                label: None,
                salt: salt.to_vec(),
                hmac: keys.mac(&buf),
                ciphertext: buf,
            }
        };
        let good = vault_of(&[
            b'a', b'b', 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
        ]);
        assert_eq!(*good.decrypt(b"pw").unwrap(), b"ab");
        let mut block = [3u8; 16];
        block[14] = 2;
        let e = vault_of(&block).decrypt(b"pw").unwrap_err().to_string();
        assert!(
            e.contains("byte 2 from the end is 0x02, expected 0x03"),
            "{e}"
        );
        let e = vault_of(&[0u8; 16]).decrypt(b"pw").unwrap_err().to_string();
        assert!(e.contains("last byte 0x00 is not a pad length"), "{e}");
        let e = vault_of(&[17u8; 16])
            .decrypt(b"pw")
            .unwrap_err()
            .to_string();
        assert!(e.contains("last byte 0x11"), "{e}");
    }

    #[test]
    fn refuses_to_encrypt_twice_bad_labels_and_empty_passwords() {
        let vault = encrypt(b"x", b"pw", None).unwrap();
        assert!(matches!(
            encrypt(vault.as_bytes(), b"pw", None),
            Err(Error::AlreadyEncrypted { .. })
        ));
        for bad in ["", "a;b", "a\nb", " a"] {
            assert!(
                matches!(
                    encrypt(b"x", b"pw", Some(bad)),
                    Err(Error::InvalidLabel { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(encrypt(b"x", b"", None).is_err());
    }

    #[test]
    fn a_label_in_a_1_1_header_is_read_as_ansible_does() {
        let vault = encrypt(b"x", b"pw", Some("prod")).unwrap();
        let relabelled = vault.replacen(";1.2;", ";1.1;", 1);
        let envelope = parse_envelope(relabelled.as_bytes()).unwrap();
        assert_eq!(envelope.label(), Some("prod"));
        assert_eq!(*envelope.decrypt(b"pw").unwrap(), b"x");
    }
}
