//! Vault passwords: where they come from, and the keyring that tries them.
//!
//! Sources, as ansible-vault has them (never the command line itself):
//! - a password file: its content, stripped of surrounding whitespace;
//! - an executable file: run with no arguments (stdin closed), its stdout stripped of leading and
//!   trailing `\r` and `\n`; a non-zero exit is an error;
//! - a "client" executable, whose name without extension ends in `-client`: run with
//!   `--vault-id LABEL` when a label was given; exit status 2 means it does not know that id;
//! - [`crate::settings::VAULT_TOOL_PASSWORD`], the password itself, for CI.
//!
//! Each password carries a vault id (label), `default` unless given as `label@source`. To decrypt,
//! the passwords whose label matches the vault's header are tried first, then the others (only the
//! matching ones with `ANSIBLE_VAULT_ID_MATCH`). To encrypt, exactly one password must be loaded,
//! or `--encrypt-vault-id` must choose one. An empty password is refused.
//!
//! Unlike ansible, a source that cannot be read is an error even when another source works: a
//! typo in a path must not silently fall back to another password. Prompting is not supported.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use ops_common::settings::Settings;
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::{Error, Result};
use crate::format::{self, DEFAULT_LABEL, Envelope};
use crate::settings;

/// What ansible-vault's client scripts return for a vault id they do not know.
const CLIENT_UNKNOWN_ID: i32 = 2;

/// A `--vault-id` value: `[LABEL@]SOURCE`, where SOURCE is a password file or an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultIdSpec {
    label: Option<String>,
    source: String,
}

impl VaultIdSpec {
    /// A vault id with an optional label (ansible's `default` when none) and a source path.
    ///
    /// # Errors
    /// A label the vault format cannot carry, an empty source, or `prompt` (not supported).
    pub fn new(label: Option<&str>, source: &str) -> Result<Self> {
        let label = label.filter(|l| !l.is_empty());
        if let Some(l) = label {
            format::validate_label(l)?;
        }
        if source.is_empty() {
            return Err(Error::Usage(
                "a vault id needs a password file or executable after `@`".to_owned(),
            ));
        }
        if source == "prompt" || source == "prompt_ask_vault_pass" {
            return Err(Error::Usage(
                "vault-tool does not prompt for passwords; give a password file or executable, or set VAULT_TOOL_PASSWORD".to_owned(),
            ));
        }
        Ok(Self {
            label: label.map(str::to_owned),
            source: source.to_owned(),
        })
    }

    /// A password file given with `--vault-password-file` (ansible's `default@FILE`).
    pub fn password_file(path: &Path) -> Self {
        Self {
            label: Some(DEFAULT_LABEL.to_owned()),
            source: path.to_string_lossy().into_owned(),
        }
    }

    /// The label, `default` when none was given.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(DEFAULT_LABEL)
    }

    /// The password file or executable, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Reads the password.
    ///
    /// # Errors
    /// [`Error::PasswordSource`] when the file is missing or unreadable, the executable fails, or
    /// the password is empty.
    pub fn load(&self) -> Result<Secret> {
        let path = expand_home(&self.source);
        let origin = format!("vault id {} ({})", self.label(), path.display());
        let failed = |message: String, cause: Option<std::io::Error>| Error::PasswordSource {
            origin: origin.clone(),
            message,
            cause,
        };
        let meta = std::fs::metadata(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                failed("no such file".to_owned(), None)
            } else {
                failed("cannot read it".to_owned(), Some(e))
            }
        })?;
        if meta.is_dir() {
            return Err(failed("is a directory".to_owned(), None));
        }
        let password = if meta.permissions().mode() & 0o111 != 0 {
            self.run_script(&path, &failed)?
        } else {
            let mut content = Zeroizing::new(Vec::new());
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut content))
                .map_err(|e| failed("cannot read it".to_owned(), Some(e)))?;
            if format::is_encrypted(strip_python_whitespace(&content)) {
                return Err(failed(
                    "the password file is itself vault-encrypted, which vault-tool does not support"
                        .to_owned(),
                    None,
                ));
            }
            Zeroizing::new(strip_python_whitespace(&content).to_vec())
        };
        tracing::debug!(source = %origin, "vault password loaded");
        Secret::new(self.label(), password, origin)
    }

    fn run_script(
        &self,
        path: &Path,
        failed: &dyn Fn(String, Option<std::io::Error>) -> Error,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let client = is_client_script(&self.source);
        let mut command = Command::new(path);
        if client && let Some(label) = &self.label {
            command.args(["--vault-id", label]);
        }
        // Stdin is closed so a script cannot swallow the data piped to vault-tool; a plain script
        // keeps stderr (to talk to the user, as with ansible), a client's is captured for errors.
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if client {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        let output = command
            .output()
            .map_err(|e| failed("cannot run it".to_owned(), Some(e)))?;
        let mut stdout = Zeroizing::new(output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.lines().next().unwrap_or_default().trim();
        let detail = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        };
        if !output.status.success() {
            stdout.zeroize();
            let message = match output.status.code() {
                Some(CLIENT_UNKNOWN_ID) if client => {
                    format!(
                        "the client script does not know vault id {}{detail}",
                        self.label()
                    )
                }
                Some(code) => format!("the script exited with status {code}{detail}"),
                None => format!("the script was killed by a signal{detail}"),
            };
            return Err(failed(message, None));
        }
        let trimmed = trim_matches_bytes(&stdout, b"\r\n");
        Ok(Zeroizing::new(trimmed.to_vec()))
    }
}

impl FromStr for VaultIdSpec {
    type Err = String;

    /// Parses `[LABEL@]SOURCE`, splitting at the first `@` as ansible does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (label, source) = match s.split_once('@') {
            Some((label, source)) => (Some(label), source),
            None => (None, s),
        };
        Self::new(label, source).map_err(|e| e.to_string())
    }
}

impl fmt::Display for VaultIdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.label(), self.source)
    }
}

/// ansible's `script_is_client`: the file name without its extension ends in `-client`.
fn is_client_script(source: &str) -> bool {
    let name = Path::new(source)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Python's os.path.splitext: a leading dot does not start an extension.
    let stem = match name.rfind('.') {
        Some(i) if name[..i].chars().any(|c| c != '.') => &name[..i],
        _ => name.as_str(),
    };
    stem.ends_with("-client")
}

/// Expands a leading `~/` to the home directory, as ansible does for vault id sources (a shell
/// does not expand `~` after `label@`).
fn expand_home(source: &str) -> PathBuf {
    match (source.strip_prefix("~/"), std::env::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(source),
    }
}

/// Python's `bytes.strip()`: removes ASCII whitespace (space, \t, \n, \r, \x0b, \x0c) around.
fn strip_python_whitespace(data: &[u8]) -> &[u8] {
    trim_matches_bytes(data, b" \t\n\r\x0b\x0c")
}

fn trim_matches_bytes<'a>(data: &'a [u8], set: &[u8]) -> &'a [u8] {
    let start = data
        .iter()
        .position(|b| !set.contains(b))
        .unwrap_or(data.len());
    let end = data
        .iter()
        .rposition(|b| !set.contains(b))
        .map_or(start, |i| i + 1);
    &data[start..end]
}

/// One vault password and its vault id. Wiped from memory when dropped; never printed.
pub struct Secret {
    label: String,
    password: Zeroizing<Vec<u8>>,
    origin: String,
}

impl Secret {
    /// A password with its label and a description of where it came from (for messages).
    ///
    /// # Errors
    /// [`Error::PasswordSource`] for an empty password, [`Error::InvalidLabel`].
    pub fn new(
        label: &str,
        password: Zeroizing<Vec<u8>>,
        origin: impl Into<String>,
    ) -> Result<Self> {
        let origin = origin.into();
        if password.is_empty() {
            return Err(Error::PasswordSource {
                origin,
                message: "the password is empty".to_owned(),
                cause: None,
            });
        }
        format::validate_label(label)?;
        Ok(Self {
            label: label.to_owned(),
            password,
            origin,
        })
    }

    /// The vault id.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The password bytes.
    pub fn password(&self) -> &[u8] {
        &self.password
    }

    /// Where the password came from (label and path, or setting name).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("label", &self.label)
            .field("password", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

/// What a keyring decrypted, and with which password.
pub struct Decrypted<'k> {
    /// The plaintext, wiped when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The vault id in the vault's header (`None` for format 1.1).
    pub header_label: Option<String>,
    /// The password that decrypted it.
    pub secret: &'k Secret,
}

/// The loaded passwords, in the order they are tried.
#[derive(Debug, Default)]
pub struct Keyring {
    secrets: Vec<Secret>,
    id_match: bool,
}

impl Keyring {
    /// A keyring of these passwords, tried in this order.
    pub fn new(secrets: Vec<Secret>) -> Self {
        Self {
            secrets,
            id_match: false,
        }
    }

    /// Only try passwords whose label matches the vault's (ansible's `ANSIBLE_VAULT_ID_MATCH`).
    #[must_use]
    pub fn with_id_match(mut self, on: bool) -> Self {
        self.id_match = on;
        self
    }

    /// True when no password is loaded.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The labels of the loaded passwords, in order.
    pub fn labels(&self) -> Vec<String> {
        self.secrets.iter().map(|s| s.label.clone()).collect()
    }

    /// Parses and decrypts a vault.
    ///
    /// # Errors
    /// [`Error::Malformed`] (before any password is tried), [`Error::NoPassword`],
    /// [`Error::NoMatchingPassword`], [`Error::WrongPassword`] naming the labels tried.
    pub fn decrypt(&self, data: &[u8]) -> Result<Decrypted<'_>> {
        let envelope = format::parse_envelope(data)?;
        self.decrypt_envelope(&envelope)
    }

    /// Decrypts a parsed vault, trying the passwords with the vault's label first.
    ///
    /// # Errors
    /// See [`Keyring::decrypt`].
    pub fn decrypt_envelope(&self, envelope: &Envelope) -> Result<Decrypted<'_>> {
        if self.secrets.is_empty() {
            return Err(Error::NoPassword);
        }
        let wanted = envelope.effective_label();
        let matching = self.secrets.iter().filter(|s| s.label == wanted);
        let others = self
            .secrets
            .iter()
            .filter(|s| !self.id_match && s.label != wanted);
        let mut tried = Vec::new();
        for secret in matching.chain(others) {
            tracing::trace!(vault_id = %secret.label, "trying password");
            match envelope.decrypt(&secret.password) {
                Ok(plaintext) => {
                    tracing::debug!(vault_id = %secret.label, "decrypted");
                    return Ok(Decrypted {
                        plaintext,
                        header_label: envelope.label().map(str::to_owned),
                        secret,
                    });
                }
                Err(Error::WrongPassword { .. }) => tried.push(secret.label.clone()),
                Err(e) => return Err(e),
            }
        }
        if tried.is_empty() {
            return Err(Error::NoMatchingPassword {
                input: None,
                label: wanted.to_owned(),
                loaded: self.labels(),
            });
        }
        Err(Error::WrongPassword { input: None, tried })
    }

    /// The password to encrypt with: the one labelled `encrypt_id`, or the only one loaded.
    ///
    /// # Errors
    /// [`Error::NoPassword`], [`Error::UnknownEncryptId`], [`Error::AmbiguousEncryptId`] when
    /// several are loaded and none is chosen (as ansible).
    pub fn encryption_secret(&self, encrypt_id: Option<&str>) -> Result<&Secret> {
        if self.secrets.is_empty() {
            return Err(Error::NoPassword);
        }
        match encrypt_id {
            Some(id) => {
                self.secrets
                    .iter()
                    .find(|s| s.label == id)
                    .ok_or_else(|| Error::UnknownEncryptId {
                        label: id.to_owned(),
                        loaded: self.labels(),
                    })
            }
            None if self.secrets.len() == 1 => Ok(&self.secrets[0]),
            None => Err(Error::AmbiguousEncryptId {
                labels: self.labels(),
            }),
        }
    }
}

/// Something that gives a keyring when one is needed, so that passwords (and password scripts)
/// are only loaded when there is something to decrypt.
pub trait KeyringSource {
    /// The keyring.
    ///
    /// # Errors
    /// When the passwords cannot be loaded.
    fn keyring(&self) -> Result<&Keyring>;
}

impl KeyringSource for Keyring {
    fn keyring(&self) -> Result<&Keyring> {
        Ok(self)
    }
}

/// [`Sources`] loaded on first use, once.
#[derive(Debug)]
pub struct LazyKeyring {
    sources: Sources,
    loaded: std::cell::OnceCell<Keyring>,
}

impl KeyringSource for LazyKeyring {
    fn keyring(&self) -> Result<&Keyring> {
        if let Some(keyring) = self.loaded.get() {
            return Ok(keyring);
        }
        let keyring = self.sources.load()?;
        Ok(self.loaded.get_or_init(|| keyring))
    }
}

/// Where the passwords of one command come from, in the order they are loaded and tried:
/// `ANSIBLE_VAULT_IDENTITY_LIST`, `--vault-id` flags, `--vault-password-file` flags,
/// `ANSIBLE_VAULT_PASSWORD_FILE`, then `VAULT_TOOL_PASSWORD`.
#[derive(Debug, Default)]
pub struct Sources {
    vault_ids: Vec<VaultIdSpec>,
    password: Option<(String, Zeroizing<String>)>,
    id_match: bool,
}

impl Sources {
    /// Vault ids only (e.g. a new password for `rekey`).
    pub fn from_vault_ids(vault_ids: Vec<VaultIdSpec>) -> Self {
        Self {
            vault_ids,
            ..Self::default()
        }
    }

    /// The command line's vault ids and password files, with the settings in
    /// [`crate::settings::PASSWORDS`] (which the calling tool must declare).
    ///
    /// # Errors
    /// An invalid setting: a malformed identity list, an invalid label, a non-boolean
    /// `ANSIBLE_VAULT_ID_MATCH`.
    pub fn from_settings(
        settings: &Settings,
        vault_ids: &[VaultIdSpec],
        password_files: &[PathBuf],
    ) -> Result<Self> {
        let mut all = Vec::new();
        if let Some(list) = settings.get(&settings::ANSIBLE_VAULT_IDENTITY_LIST) {
            for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let spec = item.parse::<VaultIdSpec>().map_err(|m| {
                    settings.invalid(
                        &settings::ANSIBLE_VAULT_IDENTITY_LIST,
                        format!("{item}: {m}"),
                    )
                })?;
                all.push(spec);
            }
        }
        all.extend(vault_ids.iter().cloned());
        all.extend(password_files.iter().map(|p| VaultIdSpec::password_file(p)));
        if let Some(file) = settings.get(&settings::ANSIBLE_VAULT_PASSWORD_FILE) {
            all.push(VaultIdSpec::password_file(Path::new(file)));
        }
        // The same file under the same label twice (the flag and the environment variable) is
        // one password, not two that would make encrypting ambiguous.
        let mut seen = Vec::new();
        all.retain(|spec| {
            let fresh = !seen.contains(spec);
            if fresh {
                seen.push(spec.clone());
            }
            fresh
        });
        let password = match settings.get(&settings::VAULT_TOOL_PASSWORD) {
            Some(p) => {
                let label = settings
                    .get(&settings::VAULT_TOOL_PASSWORD_ID)
                    .unwrap_or(DEFAULT_LABEL);
                format::validate_label(label).map_err(|e| {
                    settings.invalid(&settings::VAULT_TOOL_PASSWORD_ID, e.to_string())
                })?;
                Some((label.to_owned(), Zeroizing::new(p.to_owned())))
            }
            None => None,
        };
        let id_match = settings
            .flag(&settings::ANSIBLE_VAULT_ID_MATCH)?
            .unwrap_or(false);
        Ok(Self {
            vault_ids: all,
            password,
            id_match,
        })
    }

    /// Loads the passwords on first use ([`KeyringSource::keyring`]).
    pub fn lazy(self) -> LazyKeyring {
        LazyKeyring {
            sources: self,
            loaded: std::cell::OnceCell::new(),
        }
    }

    /// True when no source is given at all.
    pub fn is_empty(&self) -> bool {
        self.vault_ids.is_empty() && self.password.is_none()
    }

    /// Loads every password (running executables once each).
    ///
    /// # Errors
    /// [`Error::NoPassword`] when there is no source; the first source that fails.
    pub fn load(&self) -> Result<Keyring> {
        if self.is_empty() {
            return Err(Error::NoPassword);
        }
        let mut secrets = Vec::with_capacity(self.vault_ids.len() + 1);
        for spec in &self.vault_ids {
            secrets.push(spec.load()?);
        }
        if let Some((label, password)) = &self.password {
            let stripped = strip_python_whitespace(password.as_bytes());
            secrets.push(Secret::new(
                label,
                Zeroizing::new(stripped.to_vec()),
                settings::VAULT_TOOL_PASSWORD.name,
            )?);
        }
        Ok(Keyring::new(secrets).with_id_match(self.id_match))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(label: &str, password: &str) -> Secret {
        Secret::new(label, Zeroizing::new(password.as_bytes().to_vec()), "test").unwrap()
    }

    #[test]
    fn vault_id_specs_parse_like_ansible() {
        let spec: VaultIdSpec = "prod@/etc/pw".parse().unwrap();
        assert_eq!((spec.label(), spec.source()), ("prod", "/etc/pw"));
        let spec: VaultIdSpec = "/etc/pw".parse().unwrap();
        assert_eq!(spec.label(), "default");
        let spec: VaultIdSpec = "a@b@c".parse().unwrap();
        assert_eq!((spec.label(), spec.source()), ("a", "b@c"));
        assert!("a;b@/x".parse::<VaultIdSpec>().unwrap_err().contains("';'"));
        assert!(
            "prod@prompt"
                .parse::<VaultIdSpec>()
                .unwrap_err()
                .contains("prompt")
        );
        assert!("prod@".parse::<VaultIdSpec>().is_err());
    }

    #[test]
    fn client_scripts_are_recognised_by_name() {
        assert!(is_client_script("/x/vault-pass-client.py"));
        assert!(is_client_script("keyring-client"));
        assert!(!is_client_script("/x/vault-pass.py"));
        assert!(!is_client_script("/x-client/pass"));
        // As Python's os.path.splitext: a leading dot does not start an extension.
        for (name, client) in [
            (".x-client", true),
            ("..a-client", true),
            ("x.y-client", false),
            ("a-client.tar.gz", false),
        ] {
            assert_eq!(is_client_script(name), client, "{name}");
        }
    }

    #[test]
    fn python_strip_rules() {
        assert_eq!(strip_python_whitespace(b" \x0b pw \r\n\x0c"), b"pw");
        assert_eq!(trim_matches_bytes(b"\r\n pw \n", b"\r\n"), b" pw ");
        assert_eq!(strip_python_whitespace(b" \n "), b"");
    }

    #[test]
    fn matching_label_is_tried_first_then_the_others() {
        let vault = format::encrypt(b"data", b"p-prod", Some("prod")).unwrap();
        let keyring = Keyring::new(vec![secret("dev", "p-dev"), secret("other", "p-prod")]);
        let done = keyring.decrypt(vault.as_bytes()).unwrap();
        assert_eq!(*done.plaintext, b"data");
        assert_eq!(done.secret.label(), "other");
        assert_eq!(done.header_label.as_deref(), Some("prod"));

        let strict = Keyring::new(vec![secret("other", "p-prod")]).with_id_match(true);
        assert!(matches!(
            strict.decrypt(vault.as_bytes()),
            Err(Error::NoMatchingPassword { .. })
        ));
        let wrong = Keyring::new(vec![secret("prod", "x"), secret("dev", "y")]);
        match wrong.decrypt(vault.as_bytes()) {
            Err(Error::WrongPassword { tried, .. }) => assert_eq!(tried, ["prod", "dev"]),
            other => panic!("{:?}", other.err()),
        }
        assert!(matches!(
            Keyring::default().decrypt(vault.as_bytes()),
            Err(Error::NoPassword)
        ));
    }

    #[test]
    fn encryption_needs_one_password_or_a_choice() {
        let one = Keyring::new(vec![secret("a", "1")]);
        assert_eq!(one.encryption_secret(None).unwrap().label(), "a");
        let two = Keyring::new(vec![secret("a", "1"), secret("b", "2")]);
        assert!(matches!(
            two.encryption_secret(None),
            Err(Error::AmbiguousEncryptId { .. })
        ));
        assert_eq!(two.encryption_secret(Some("b")).unwrap().label(), "b");
        assert!(matches!(
            two.encryption_secret(Some("c")),
            Err(Error::UnknownEncryptId { .. })
        ));
    }

    #[test]
    fn secrets_are_never_shown() {
        let s = secret("prod", "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(Secret::new("x", Zeroizing::new(Vec::new()), "t").is_err());
    }

    #[test]
    fn password_files_and_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "  s3cret \n\n").unwrap();
        let spec = VaultIdSpec::password_file(&file);
        assert_eq!(spec.load().unwrap().password(), b"s3cret");

        let script = dir.path().join("pw.sh");
        std::fs::write(&script, "#!/bin/sh\nprintf '\\r\\n s3cret \\r\\n'\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let spec: VaultIdSpec = format!("x@{}", script.display()).parse().unwrap();
        assert_eq!(spec.load().unwrap().password(), b" s3cret ");

        let client = dir.path().join("keys-client.sh");
        std::fs::write(
            &client,
            "#!/bin/sh\n[ \"$1 $2\" = '--vault-id prod' ] && { echo prod-pw; exit 0; }\necho \"unknown $2\" >&2; exit 2\n",
        )
        .unwrap();
        std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o700)).unwrap();
        let spec: VaultIdSpec = format!("prod@{}", client.display()).parse().unwrap();
        assert_eq!(spec.load().unwrap().password(), b"prod-pw");
        let spec: VaultIdSpec = format!("dev@{}", client.display()).parse().unwrap();
        let e = spec.load().unwrap_err().to_string();
        assert!(e.contains("does not know vault id dev: unknown dev"), "{e}");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let e = VaultIdSpec::password_file(&empty).load().unwrap_err();
        assert!(e.to_string().contains("the password is empty"), "{e}");
        let e = VaultIdSpec::password_file(&dir.path().join("nope"))
            .load()
            .unwrap_err();
        assert!(e.to_string().ends_with("no such file"), "{e}");
    }
}
