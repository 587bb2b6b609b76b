//! The commands, one module each, and what they share: reading inputs, writing outputs, loading
//! passwords.

mod check;
mod create;
mod decrypt;
mod edit;
mod encrypt;
mod encrypt_string;
mod envdir;
mod rekey;
mod textconv;
mod view;

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ops_common::cli::Context;
use ops_common::{exit, fsutil, output};
use zeroize::Zeroizing;

use crate::cli::{Command, PasswordArgs};
use crate::error::{Error, Result};
use crate::password::{KeyringSource, LazyKeyring, Sources};
use crate::{format, settings, yaml};

/// Runs a command (not a common one: the driver answers those).
pub(crate) fn run(command: Command, ctx: &Context) -> Result<u8> {
    match command {
        Command::Create(args) => create::run(&args, ctx),
        Command::Edit(args) => edit::run(&args, ctx),
        Command::View(args) => view::run(&args, ctx),
        Command::Encrypt(args) => encrypt::run(&args, ctx),
        Command::Decrypt(args) => decrypt::run(&args, ctx),
        Command::Rekey(args) => rekey::run(&args, ctx),
        Command::EncryptString(args) => encrypt_string::run(&args, ctx),
        Command::Check(args) => check::run(&args, ctx),
        Command::Envdir(args) => envdir::run(&args, ctx),
        Command::Textconv(args) => textconv::run(&args, ctx),
        Command::Common(_) => Ok(exit::SUCCESS),
    }
}

/// The passwords of this command, loaded when first needed.
fn keyring(ctx: &Context, args: &PasswordArgs) -> Result<LazyKeyring> {
    Ok(Sources::from_settings(&ctx.settings, &args.vault_id, &args.vault_password_file)?.lazy())
}

/// The vault id to encrypt with (`--encrypt-vault-id` or `ANSIBLE_VAULT_ENCRYPT_IDENTITY`).
fn encrypt_id(ctx: &Context) -> Option<&str> {
    ctx.settings.get(&settings::ANSIBLE_VAULT_ENCRYPT_IDENTITY)
}

/// The editor command line from `EDITOR`, split like a shell.
fn editor_command(ctx: &Context) -> Result<Vec<String>> {
    let raw = ctx.settings.get(&settings::EDITOR).unwrap_or("vi");
    match shlex::split(raw) {
        Some(words) if !words.is_empty() => Ok(words),
        _ => Err(ctx
            .settings
            .invalid(&settings::EDITOR, format!("{raw:?} is not a command line"))
            .into()),
    }
}

/// `-` means stdin (or stdout, for an output).
fn is_dash(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// An input read whole: its name for messages, where it lives (symlinks followed, as ansible
/// does; `None` for stdin), and its bytes (wiped when dropped: they may be plaintext).
struct Input {
    name: String,
    path: Option<PathBuf>,
    data: Zeroizing<Vec<u8>>,
}

fn read_input(path: &Path) -> Result<Input> {
    let mut data = Zeroizing::new(Vec::new());
    if is_dash(path) {
        std::io::stdin()
            .lock()
            .read_to_end(&mut data)
            .map_err(|e| Error::io("stdin", e))?;
        return Ok(Input {
            name: "stdin".to_owned(),
            path: None,
            data,
        });
    }
    let real = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    std::fs::File::open(&real)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| Error::io(path, e))?;
    Ok(Input {
        name: path.display().to_string(),
        path: Some(real),
        data,
    })
}

/// The inputs of a command that takes files or stdin (none, or `-`).
fn inputs(files: &[PathBuf]) -> Vec<PathBuf> {
    if files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        files.to_vec()
    }
}

/// Decrypts a whole-file vault, or reveals the inline values of a YAML file.
fn decrypt_any(input: &Input, keys: &dyn KeyringSource) -> Result<Zeroizing<Vec<u8>>> {
    if format::is_encrypted(&input.data) {
        let done = keys
            .keyring()?
            .decrypt(&input.data)
            .map_err(|e| e.for_input(&input.name))?;
        return Ok(done.plaintext);
    }
    if let Ok(text) = std::str::from_utf8(&input.data)
        && yaml::has_inline_values(text)
    {
        let revealed = yaml::reveal(text, keys).map_err(|e| e.for_input(&input.name))?;
        return Ok(Zeroizing::new(revealed.into_bytes()));
    }
    Err(Error::NotEncrypted {
        input: input.name.clone(),
    })
}

/// Where a result goes.
enum Destination {
    Stdout,
    File(PathBuf),
}

impl Destination {
    /// `--output`, or the input itself (stdout for stdin).
    fn of(output: Option<&Path>, input: &Input) -> Self {
        match (output, &input.path) {
            (Some(o), _) if is_dash(o) => Self::Stdout,
            (Some(o), _) => Self::File(o.to_path_buf()),
            (None, Some(p)) => Self::File(p.clone()),
            (None, None) => Self::Stdout,
        }
    }

    /// Writes `data`: to stdout, or atomically to a file with `mode`.
    fn write(&self, data: &[u8], mode: u32) -> Result<()> {
        match self {
            Self::Stdout => output::print_bytes(data).map_err(Error::from),
            Self::File(path) => {
                fsutil::write_atomic(path, data, mode)?;
                tracing::info!(file = %path.display(), "written");
                Ok(())
            }
        }
    }
}

/// Refuses `--output` with several inputs, as ansible does.
fn one_input_for_output(output: Option<&Path>, inputs: &[PathBuf]) -> Result<()> {
    if output.is_some() && inputs.len() > 1 {
        return Err(Error::Usage(
            "--output takes a single input file".to_owned(),
        ));
    }
    Ok(())
}

/// Replaces an existing file atomically, keeping its permission bits and, where allowed, its
/// owner and group (as ansible's `edit` and `rekey` do).
fn replace_keeping_mode(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    let mut file = fsutil::AtomicFile::create(path, mode)?;
    file.write_all(data).map_err(|e| Error::io(path, e))?;
    let current = file.file().metadata().map_err(|e| Error::io(path, e))?;
    if (current.uid(), current.gid()) != (meta.uid(), meta.gid())
        && let Err(e) = std::os::unix::fs::fchown(file.file(), Some(meta.uid()), Some(meta.gid()))
    {
        tracing::warn!(file = %path.display(), "could not keep the owner and group: {e}");
    }
    file.commit()?;
    Ok(())
}
