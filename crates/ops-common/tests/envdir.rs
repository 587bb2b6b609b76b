//! Our envdir reader against the real `envdir` program (Debian package `daemontools`): for tricky
//! files, the variables we read must be exactly the environment envdir gives a program.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ops_common::envdir::Envdir;

/// The environment `envdir dir1 envdir dir2 … env` gives, starting from `base` only.
fn real_envdir(dirs: &[PathBuf], base: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut cmd = Command::new("env");
    cmd.arg("-i");
    for (k, v) in base {
        cmd.arg(format!("{k}={v}"));
    }
    for dir in dirs {
        cmd.arg("envdir").arg(dir);
    }
    cmd.args(["env", "-0"]);
    let out = cmd.output().expect("running envdir (install daemontools)");
    assert!(
        out.status.success(),
        "envdir failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let text = String::from_utf8(entry.to_vec()).expect("UTF-8 environment");
            let (k, v) = text.split_once('=').expect("NAME=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn write(dir: &Path, name: &str, content: &[u8]) {
    std::fs::write(dir.join(name), content).unwrap();
}

fn base() -> BTreeMap<String, String> {
    [
        ("REMOVED_BY_EMPTY_FILE", "was set"),
        ("UNTOUCHED", "kept"),
        ("REPLACED", "old"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[test]
fn tricky_files_read_exactly_as_envdir_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("env");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "TRAILING_BLANKS", b"value \t  \t\n");
    write(&dir, "CRLF", b"windows\r\n");
    write(&dir, "NUL_BYTES", b"line one\0line two\0\n");
    write(&dir, "MULTI_LINE", b"first\nsecond\nthird\n");
    write(&dir, "REMOVED_BY_EMPTY_FILE", b"");
    write(&dir, "ONLY_NEWLINE", b"\n");
    write(&dir, "LEADING_BLANKS", b"  \tindented");
    write(&dir, "NO_NEWLINE", b"bare");
    write(&dir, "REPLACED", b"new\n");
    write(&dir, "BLANK_THEN_NUL", b"x \0");
    write(&dir, "UNICODE_VALUE", "naïve – ☃\n".as_bytes());
    write(&dir, "with space", b"odd name\n");
    write(&dir, "ünïcödé", b"odd name too\n");
    write(&dir, "lower_case", b"fine\n");
    write(&dir, ".hidden", b"skipped by envdir\n");
    write(&dir, "LONG", "x".repeat(100_000).as_bytes());

    let ours = Envdir::load(std::slice::from_ref(&dir))
        .unwrap()
        .apply(base());
    let theirs = real_envdir(std::slice::from_ref(&dir), &base());
    assert_eq!(ours, theirs);
    // The cases are not vacuous: spot-check what envdir did.
    assert_eq!(theirs["CRLF"], "windows\r");
    assert_eq!(theirs["NUL_BYTES"], "line one\nline two\n");
    assert_eq!(theirs["ONLY_NEWLINE"], "");
    assert!(!theirs.contains_key("REMOVED_BY_EMPTY_FILE"));
    assert!(!theirs.contains_key(".hidden"));
}

#[test]
fn later_envdirs_win_and_can_remove_earlier_values() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    std::fs::create_dir(&first).unwrap();
    std::fs::create_dir(&second).unwrap();
    write(&first, "A", b"from first\n");
    write(&first, "B", b"from first\n");
    write(&first, "C", b"from first\n");
    write(&second, "B", b"from second\n");
    write(&second, "C", b"");
    let dirs = [first, second];
    let ours = Envdir::load(&dirs).unwrap().apply(base());
    assert_eq!(ours, real_envdir(&dirs, &base()));
    assert_eq!(ours["B"], "from second");
    assert!(!ours.contains_key("C"));
}

#[test]
fn a_subdirectory_is_an_error_as_in_envdir() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("sub")).unwrap();
    let status = Command::new("envdir")
        .arg(tmp.path())
        .arg("true")
        .status()
        .unwrap();
    assert!(!status.success());
    let err = Envdir::load(&[tmp.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("sub"), "{err}");
}

#[test]
fn a_name_with_equals_is_refused_where_envdir_would_mangle_it() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "A=B", b"v\n");
    // envdir exports "A=B=v", i.e. a variable A with the value "B=v": never what was meant.
    let theirs = real_envdir(&[tmp.path().to_path_buf()], &BTreeMap::new());
    assert_eq!(theirs.get("A").map(String::as_str), Some("B=v"));
    let err = Envdir::load(&[tmp.path().to_path_buf()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("contains '='"), "{err}");
}

#[test]
fn a_missing_directory_is_an_error() {
    let err = Envdir::load(&[PathBuf::from("/nonexistent/envdir")])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("envdir /nonexistent/envdir: "), "{err}");
}
