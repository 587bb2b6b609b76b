//! Users and groups by name, for ownership.
//!
//! Looked up in `<root>/etc/passwd` and `<root>/etc/group` first when applying under `--root`
//! (a tree that carries its own accounts), then in this machine's `/etc/passwd` and `/etc/group`,
//! then through `getent` (accounts from NSS: LDAP, systemd's dynamic users). No libc call is made:
//! the crate forbids `unsafe`, and these files are what `getpwnam` reads on a Debian host.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A user's ids and home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// Account lookups, cached.
#[derive(Debug, Default)]
pub struct Accounts {
    root: Option<PathBuf>,
    users: RefCell<BTreeMap<String, Option<User>>>,
    groups: RefCell<BTreeMap<String, Option<u32>>>,
}

impl Accounts {
    /// Lookups for a run, under `root` if given.
    pub fn new(root: Option<&Path>) -> Self {
        Self {
            root: root.map(Path::to_path_buf),
            ..Self::default()
        }
    }

    fn files(&self, name: &str) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(root) = &self.root {
            files.push(root.join("etc").join(name));
        }
        files.push(Path::new("/etc").join(name));
        files
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<User> {
        if let Some(found) = self.users.borrow().get(name) {
            return found.clone();
        }
        let parse = |line: &str| -> Option<User> {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 7 && f[0] == name).then_some(())?;
            Some(User {
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: PathBuf::from(f[5]),
            })
        };
        let found = self
            .files("passwd")
            .iter()
            .find_map(|file| std::fs::read_to_string(file).ok()?.lines().find_map(parse))
            .or_else(|| getent("passwd", name).as_deref().and_then(parse));
        self.users
            .borrow_mut()
            .insert(name.to_owned(), found.clone());
        found
    }

    /// A group id by name.
    pub fn group(&self, name: &str) -> Option<u32> {
        if let Some(found) = self.groups.borrow().get(name) {
            return *found;
        }
        let parse = |line: &str| -> Option<u32> {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 3 && f[0] == name).then_some(())?;
            f[2].parse().ok()
        };
        let found = self
            .files("group")
            .iter()
            .find_map(|file| std::fs::read_to_string(file).ok()?.lines().find_map(parse))
            .or_else(|| getent("group", name).as_deref().and_then(parse));
        self.groups.borrow_mut().insert(name.to_owned(), found);
        found
    }
}

/// `getent DATABASE NAME`'s line, if any.
fn getent(database: &str, name: &str) -> Option<String> {
    let out = Command::new("getent")
        .args([database, name])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_accounts_come_first_then_the_machines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "foi:x:1234:1235:FOI:/var/www/foi:/bin/bash\nroot:x:7:7::/r:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "foi:x:1235:\n").unwrap();
        let accounts = Accounts::new(Some(dir.path()));
        assert_eq!(
            accounts.user("foi"),
            Some(User {
                uid: 1234,
                gid: 1235,
                home: "/var/www/foi".into()
            })
        );
        assert_eq!(accounts.user("root").map(|u| u.uid), Some(7));
        assert_eq!(accounts.group("foi"), Some(1235));
        assert_eq!(Accounts::new(None).user("root").map(|u| u.uid), Some(0));
        assert_eq!(Accounts::new(None).group("root"), Some(0));
        assert_eq!(accounts.user("no-such-user-here"), None);
    }
}
