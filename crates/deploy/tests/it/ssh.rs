//! The SSH transport, through the OpenSSH client, to an sshd the test starts on 127.0.0.1 with
//! its own configuration and keys. The "remote" host is this machine: the plan is applied under
//! `--root` by the copy of deploy sshd runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ops_testkit::free_port;

use crate::support::Site;

const SECRET: &str = "ssh-transported-secret-value";

/// An sshd on 127.0.0.1, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sshd {
    /// Starts sshd with a fresh host key, accepting a fresh user key for root.
    fn start(dir: &Path) -> Self {
        assert!(
            ops_testkit::is_root(),
            "sshd must run as root (it switches users)"
        );
        std::fs::create_dir_all(dir).unwrap();
        for key in ["host_key", "user_key"] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(key))
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen");
        }
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
        // sshd refuses to start without its privilege separation directory, which the Debian
        // package only creates when its service starts.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nLogLevel ERROR\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let host_key = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_key}"),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .spawn()
            .expect("starting sshd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// The inventory entry of a host reached through this sshd.
    /// Writes an inventory whose `staging` is one host, `remote1`, reached through this sshd.
    fn write_inventory(&self, site: &Site, remote_dir: &Path, become_root: bool) {
        site.write(
            "inventory.yml",
            &format!(
                "environments:\n  staging:\n    hosts:\n      remote1: {}\n",
                self.host_entry(remote_dir, become_root)
            ),
        );
    }

    fn host_entry(&self, remote_dir: &Path, become_root: bool) -> String {
        format!(
            "{{transport: ssh, host: 127.0.0.1, port: {}, user: root, become: {become_root}, identity_file: {d}/user_key, remote_dir: {r}, ssh_options: [UserKnownHostsFile={d}/known_hosts, StrictHostKeyChecking=yes]}}",
            self.port,
            d = self.dir.display(),
            r = remote_dir.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The binary sent to the host, without its debug information (a debug build is over 200 MB).
fn stripped_binary(site: &Site) -> PathBuf {
    let binary = site.scratch("deploy-stripped");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&binary)
        .arg(crate::support::deploy())
        .status()
        .unwrap()
        .success();
    assert!(ok, "strip");
    binary
}

#[test]
fn a_plan_is_applied_over_ssh_by_a_copied_binary_and_results_stream_back() {
    let site = Site::new("deploy-ssh");
    let sshd = Sshd::start(&site.scratch("sshd"));
    let remote_dir = site.scratch("remote-bin");
    sshd.write_inventory(&site, &remote_dir, false);
    site.write(
        "group_vars/all/vars.yml",
        "db_password: \"{{ vault_db_password }}\"\n",
    );
    site.write_vault(
        "group_vars/staging/vault.yml",
        &format!("vault_db_password: {SECRET}\n"),
    );
    site.write(
        "plan/a.yml",
        "resources:\n  - file: /etc/app.conf\n    content: \"password={{ db_password }}\\nhost={{ inventory_hostname }}\\n\"\n    mode: \"0600\"\n  - envdir: /etc/app.d\n    vars: {PGPASSWORD: \"{{ db_password }}\"}\n  - directory: /srv/app\n",
    );
    let binary = stripped_binary(&site);
    let root = site.root();
    let apply = |extra: &[&str]| {
        let mut args = vec!["apply", "staging", "--root", root.to_str().unwrap()];
        args.extend(extra);
        site.cmd(args).env("DEPLOY_REMOTE_BINARY", &binary).run()
    };
    let first = apply(&["--diff"]).success();
    assert!(
        first.stdout.contains("==> apply staging: remote1 (ssh)"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("changed      file             /etc/app.conf"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("+password=********"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("remote1: 0 ok, 3 changed, 0 failed, 0 skipped"),
        "{}",
        first.stdout
    );
    assert!(!first.stdout.contains(SECRET) && !first.stderr.contains(SECRET));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app.conf")).unwrap(),
        format!("password={SECRET}\nhost=remote1\n")
    );
    // The binary was copied, and it is the same build.
    let copied = remote_dir.join("deploy");
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(&binary).unwrap()
    );
    // The secret is on the remote disk only in the files that need it.
    let mut files = Vec::new();
    files_under(&root, &mut files);
    files_under(&remote_dir, &mut files);
    files.sort();
    let holding: Vec<_> = files
        .iter()
        .filter(|f| {
            std::fs::read(f)
                .unwrap()
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes())
        })
        .collect();
    assert_eq!(
        holding,
        [
            &root.join("etc/app.conf"),
            &root.join("etc/app.d/PGPASSWORD")
        ]
    );

    // A second run: nothing changes, and the binary is not copied again.
    let before = std::fs::metadata(&copied).unwrap().modified().unwrap();
    let second = apply(&["--json"]).success();
    let doc: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(doc["summary"]["changed"], 0, "{doc}");
    assert_eq!(doc["hosts"][0]["transport"], "ssh");
    assert_eq!(doc["hosts"][0]["results"].as_array().unwrap().len(), 3);
    assert_eq!(
        std::fs::metadata(&copied).unwrap().modified().unwrap(),
        before
    );

    // Another build on the host is replaced; with `become`, the remote deploy runs through
    // `sudo -n` (root's sudo needs no password).
    std::fs::write(&copied, "#!/bin/sh\necho deploy 0.0.0\n").unwrap();
    sshd.write_inventory(&site, &remote_dir, true);
    let out = apply(&[]).success();
    assert!(
        out.stdout.contains("remote1: 3 ok, 0 changed"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(&binary).unwrap()
    );
}

#[test]
fn an_unreachable_host_is_a_one_line_transport_error() {
    let site = Site::new("deploy-ssh-down");
    let port = free_port();
    site.write(
        "inventory.yml",
        &format!(
            "environments:\n  staging:\n    hosts:\n      down1: {{transport: ssh, host: 127.0.0.1, port: {port}, ssh_options: [ConnectTimeout=5]}}\n"
        ),
    );
    site.write("plan/a.yml", "resources:\n  - directory: /srv/app\n");
    let out = site.apply_root(&["--json"]).code(10).one_line_error();
    // The JSON document still comes, with what was done before the error.
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["hosts"][0]["host"], "down1");
    assert_eq!(doc["hosts"][0]["results"].as_array().unwrap().len(), 0);
    assert!(
        out.stderr
            .contains("down1: checking the deploy binary: ssh exited with status 255"),
        "{}",
        out.stderr
    );
}
