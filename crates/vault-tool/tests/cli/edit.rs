//! edit and create with a scripted `$EDITOR`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{
    Scratch, V1_PASSWORD, fixture, fixture_bytes, header, mode_of, names_in, read, set_mode, vt,
};

/// An editor script in a directory whose name has a space (so `EDITOR` must be split like a
/// shell), which records the file it got, that file's mode and its directory's mode, then runs
/// `action` on the file (`$f`).
struct Editor {
    script: PathBuf,
    record: PathBuf,
}

impl Editor {
    fn new(tmp: &Scratch, action: &str) -> Self {
        let record = tmp.path().join("record");
        let script = tmp.script(
            "my editors/ed.sh",
            &format!(
                "for f; do :; done\nstat -c '%a' \"$f\" \"$(dirname \"$f\")\" > '{r}'\necho \"$f\" >> '{r}'\n{action}",
                r = record.display()
            ),
        );
        Self { script, record }
    }

    /// `EDITOR`, quoted and with an extra argument before the file.
    fn command(&self) -> String {
        format!("'{}' --wait", self.script.display())
    }

    /// (file mode, directory mode, path of the temporary file) as the editor saw them.
    fn seen(&self) -> (String, String, PathBuf) {
        let text = std::fs::read_to_string(&self.record).expect("the editor ran");
        let lines: Vec<&str> = text.lines().collect();
        (
            lines[0].to_owned(),
            lines[1].to_owned(),
            PathBuf::from(lines[2]),
        )
    }

    /// Asserts the temporary file was private and is gone with its directory.
    #[track_caller]
    fn assert_private_and_wiped(&self, name: &str) -> PathBuf {
        let (file_mode, dir_mode, temp) = self.seen();
        assert_eq!((file_mode.as_str(), dir_mode.as_str()), ("600", "700"));
        assert_eq!(temp.file_name().unwrap(), name);
        assert!(!temp.exists(), "{} left behind", temp.display());
        assert!(
            !temp.parent().unwrap().exists(),
            "temporary directory left behind"
        );
        temp
    }
}

fn prod_password() -> String {
    String::from_utf8(fixture_bytes("v2-password-prod.txt")).unwrap()
}

fn view(path: &Path, password: &str) -> Vec<u8> {
    vt().arg("view")
        .arg(path)
        .env("VAULT_TOOL_PASSWORD", password)
        .run()
        .success()
        .stdout_bytes
}

#[test]
fn edit_reencrypts_keeping_label_and_mode_and_wipes_the_temporary_file() {
    let tmp = Scratch::new();
    let vault = tmp.copy_fixture("v2-vault.yml", "vars/vault.yml");
    set_mode(&vault, 0o640);
    let editor = Editor::new(&tmp, "echo 'vault_new: added' >> \"$f\"");
    vt().arg("edit")
        .arg(&vault)
        .arg("--vault-id")
        .arg(format!(
            "prod@{}",
            fixture("v2-password-prod.txt").display()
        ))
        .env("EDITOR", editor.command())
        .run()
        .success();
    editor.assert_private_and_wiped("vault.yml");
    assert_eq!(header(&vault), "$ANSIBLE_VAULT;1.2;AES256;prod");
    assert_eq!(mode_of(&vault), 0o640);
    let mut expected = fixture_bytes("v2-plaintext.yml");
    expected.extend(b"vault_new: added\n");
    assert_eq!(view(&vault, &prod_password()), expected);
    assert_eq!(names_in(vault.parent().unwrap()), ["vault.yml"]);
}

#[test]
fn edit_of_a_1_1_file_keeps_format_1_1_and_the_password_that_opened_it() {
    let tmp = Scratch::new();
    let vault = tmp.copy_fixture("v1-vault.yml", "vault.yml");
    let other = tmp.write("other", "other-pass");
    let editor = Editor::new(&tmp, "echo 'x: 1' > \"$f\"");
    vt().arg("edit")
        .arg(&vault)
        .arg("--vault-id")
        .arg(format!("prod@{}", other.display()))
        .arg("--vault-id")
        .arg(format!("dev@{}", fixture("v1-password.txt").display()))
        .env("EDITOR", editor.command())
        .run()
        .success();
    assert_eq!(header(&vault), "$ANSIBLE_VAULT;1.1;AES256");
    assert_eq!(view(&vault, V1_PASSWORD), b"x: 1\n");
}

#[test]
fn unchanged_text_is_not_reencrypted() {
    let tmp = Scratch::new();
    let vault = tmp.copy_fixture("v1-vault.yml", "vault.yml");
    let out = vt()
        .arg("edit")
        .arg(&vault)
        .env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
        .env("EDITOR", "true")
        .run()
        .success();
    assert_eq!(read(&vault), fixture_bytes("v1-vault.yml"));
    assert!(out.stderr.contains("unchanged"), "{}", out.stderr);
    // `true` returns at once: the hint about editors that fork.
    assert!(out.stderr.contains("EDITOR=\"code -w\""), "{}", out.stderr);
}

#[test]
fn a_failing_editor_abandons_the_edit_and_still_wipes() {
    let tmp = Scratch::new();
    let vault = tmp.copy_fixture("v1-vault.yml", "vault.yml");
    let editor = Editor::new(&tmp, "echo changed > \"$f\"\nexit 1");
    vt().arg("edit")
        .arg(&vault)
        .env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
        .env("EDITOR", editor.command())
        .run()
        .code(1)
        .one_line_error()
        .stderr_has("exited with status 1; nothing was saved");
    editor.assert_private_and_wiped("vault.yml");
    assert_eq!(read(&vault), fixture_bytes("v1-vault.yml"));
    // An editor that cannot be run, and an EDITOR that is not a command line.
    vt().arg("edit")
        .arg(&vault)
        .env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
        .env(
            "EDITOR",
            tmp.path().join("no-such-editor").display().to_string(),
        )
        .run()
        .code(1)
        .stderr_has("cannot run it");
    vt().arg("edit")
        .arg(&vault)
        .env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
        .env("EDITOR", "vi 'unclosed")
        .run()
        .code(3)
        .stderr_has("setting EDITOR");
    // A wrong password never starts the editor.
    vt().arg("edit")
        .arg(&vault)
        .env("VAULT_TOOL_PASSWORD", "wrong")
        .env("EDITOR", editor.command())
        .run()
        .code(11);
}

#[test]
fn a_file_changed_on_disk_meanwhile_is_not_overwritten() {
    let tmp = Scratch::new();
    let vault = tmp.copy_fixture("v1-vault.yml", "vault.yml");
    let theirs = tmp.copy_fixture("v5-vault-empty.vault", "theirs");
    let editor = Editor::new(
        &tmp,
        &format!(
            "cp '{}' '{}'\necho mine > \"$f\"",
            theirs.display(),
            vault.display()
        ),
    );
    let out = vt()
        .arg("edit")
        .arg(&vault)
        .env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
        .env("EDITOR", editor.command())
        .run()
        .code(5)
        .stderr_has("changed on disk while it was being edited");
    assert_eq!(read(&vault), fixture_bytes("v5-vault-empty.vault"));
    let saved: Vec<String> = names_in(tmp.path())
        .into_iter()
        .filter(|n| n.starts_with("vault.yml.edited-"))
        .collect();
    assert_eq!(saved.len(), 1, "{}", out.stderr);
    assert_eq!(view(&tmp.path().join(&saved[0]), V1_PASSWORD), b"mine\n");
    editor.assert_private_and_wiped("vault.yml");
}

#[test]
fn ctrl_c_while_editing_does_not_leave_the_plaintext_behind() {
    let tmp = Scratch::new();
    let vault = tmp.copy_fixture("v1-vault.yml", "vault.yml");
    let editor = Editor::new(&tmp, "sleep 2\necho 'after: signal' > \"$f\"");
    let mut child = vt()
        .arg("edit")
        .arg(&vault)
        .env("VAULT_TOOL_PASSWORD", V1_PASSWORD)
        .env("EDITOR", editor.command())
        .spawn();
    let start = Instant::now();
    while !editor.record.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the editor never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for signal in ["-INT", "-TERM", "-HUP"] {
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "vault-tool survived the signals: {status:?}"
    );
    editor.assert_private_and_wiped("vault.yml");
    assert_eq!(view(&vault, V1_PASSWORD), b"after: signal\n");
}

#[test]
fn edit_refuses_inline_yaml_and_plaintext() {
    let tmp = Scratch::new();
    let inline = tmp.copy_fixture("v3-encrypt-string.yml", "inline.yml");
    let plain = tmp.write("plain.yml", "a: 1\n");
    vt().arg("edit")
        .arg(&inline)
        .env("VAULT_TOOL_PASSWORD", "staging-pass")
        .env("EDITOR", "true")
        .run()
        .code(2)
        .stderr_has("inline !vault values");
    vt().arg("edit")
        .arg(&plain)
        .env("VAULT_TOOL_PASSWORD", "x")
        .env("EDITOR", "true")
        .run()
        .code(12)
        .stderr_has("not vault-encrypted");
}

#[test]
fn create_makes_a_new_private_vault_and_refuses_an_existing_file() {
    let tmp = Scratch::new();
    let editor = Editor::new(&tmp, "printf 'vault_new: 1\\n' > \"$f\"");
    let target = tmp.path().join("group_vars/all/vault.yml");
    let pw = tmp.write("pw", "new-pass");
    vt().arg("create")
        .arg(&target)
        .arg("--vault-id")
        .arg(format!("prod@{}", pw.display()))
        .env("EDITOR", editor.command())
        .run()
        .success()
        .stderr_has("creating the missing directory");
    editor.assert_private_and_wiped("vault.yml");
    assert_eq!(header(&target), "$ANSIBLE_VAULT;1.2;AES256;prod");
    assert_eq!(mode_of(&target), 0o600);
    assert_eq!(view(&target, "new-pass"), b"vault_new: 1\n");
    let before = read(&target);
    vt().arg("create")
        .arg(&target)
        .env("VAULT_TOOL_PASSWORD", "new-pass")
        .env("EDITOR", editor.command())
        .run()
        .code(5)
        .stderr_has("already exists; use `vault-tool edit`");
    assert_eq!(read(&target), before);
    // No password: the editor is never started and nothing is created.
    let other = tmp.path().join("other.yml");
    vt().arg("create")
        .arg(&other)
        .env("EDITOR", "true")
        .run()
        .code(3);
    assert!(!other.exists());
}
