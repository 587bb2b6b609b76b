//! `release` and `rollback`: a real git repository made by the test, applied live on paths
//! inside a temporary directory (the build commands and the health check run).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::Site;

/// A git repository with commits made by the test.
struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Self { dir };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@example.org"])
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Commits files and returns the commit id.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let p = self.dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "--quiet", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

fn releases(app: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(app.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn current(app: &Path) -> PathBuf {
    std::fs::read_link(app.join("current")).unwrap()
}

fn live_revision(app: &Path) -> String {
    std::fs::read_to_string(app.join("current/REVISION"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A site releasing the repository into `<tmp>/app`: shared config and log, a build command,
/// a migration, and a health check that fails when the release has a file named BROKEN.
fn release_site(label: &str) -> (Site, Repo, PathBuf) {
    let site = Site::new(label);
    let repo = Repo::new(site.scratch("repo"));
    let app = site.scratch("app");
    site.write(
        "group_vars/all/vars.yml",
        &format!(
            "app_dir: {}\nrepo_url: {}\napp_ref: main\n",
            app.display(),
            repo.dir.display()
        ),
    );
    site.write(
        "plan/release.yml",
        r#"resources:
  - file: "{{ app_dir }}/shared/config/general.yml"
    content: "SITE_NAME: foi\n"
  - release: "{{ app_dir }}"
    repo: "{{ repo_url }}"
    ref: "{{ app_ref }}"
    keep: 2
    shared_dirs: [log]
    shared_files: [config/general.yml]
    build:
      - "echo built > built.txt"
    before_switch:
      - "echo migrated >> log/migrations"
    after_switch:
      - "echo restarted >> log/restarts"
    health_check:
      command: "test ! -f BROKEN"
      retries: 2
      delay: 0.1
      timeout: 5
"#,
    );
    (site, repo, app)
}

#[test]
fn a_release_is_built_switched_and_not_redone() {
    let (site, repo, app) = release_site("deploy-release");
    let first = repo.commit(
        &[
            ("README", "v1\n"),
            ("config/general.yml", "in the repository\n"),
        ],
        "v1",
    );
    let out = site.apply_live(&[]).success();
    assert!(
        out.stdout.contains("changed      release"),
        "{}",
        out.stdout
    );
    assert_eq!(live_revision(&app), first);
    assert_eq!(
        std::fs::read_to_string(app.join("current/built.txt")).unwrap(),
        "built\n"
    );
    // Shared paths are links into shared/, replacing what the repository had.
    assert_eq!(
        std::fs::read_to_string(app.join("current/config/general.yml")).unwrap(),
        "SITE_NAME: foi\n"
    );
    assert!(
        std::fs::symlink_metadata(app.join("current/log"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(app.join("shared/log/migrations")).unwrap(),
        "migrated\n"
    );
    assert_eq!(
        std::fs::read_to_string(app.join("shared/log/restarts")).unwrap(),
        "restarted\n"
    );

    let again = site.apply_live(&[]).success();
    assert!(again.stdout.contains("2 ok, 0 changed"), "{}", again.stdout);
    assert_eq!(releases(&app).len(), 1);

    // Two more commits: a release each, and only the newest two are kept.
    let second = repo.commit(&[("README", "v2\n")], "v2");
    let check = site.apply_live(&["--check"]).success();
    assert!(check.stdout.contains("would release"), "{}", check.stdout);
    assert_eq!(live_revision(&app), first, "check mode released nothing");
    site.apply_live(&[]).success();
    assert_eq!(live_revision(&app), second);
    let third = repo.commit(&[("README", "v3\n")], "v3");
    site.apply_live(&[]).success();
    assert_eq!(live_revision(&app), third);
    assert_eq!(releases(&app).len(), 2, "keep: 2");
    assert!(
        current(&app).starts_with(app.join("releases")),
        "{:?}",
        current(&app)
    );
}

#[test]
fn a_failed_health_check_switches_back_and_rollback_goes_to_the_previous_release() {
    let (site, repo, app) = release_site("deploy-health");
    let good = repo.commit(&[("README", "good\n")], "good");
    site.apply_live(&[]).success();
    let good_release = current(&app);
    repo.commit(&[("BROKEN", "yes\n")], "broken");
    let out = site.apply_live(&[]).code(1);
    assert!(
        out.stdout.contains("failed       release"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("switched back"), "{}", out.stdout);
    assert_eq!(current(&app), good_release);
    assert_eq!(live_revision(&app), good);
    assert_eq!(releases(&app).len(), 1, "the failed release is removed");
    // after_switch ran for the broken release and again after switching back.
    assert_eq!(
        std::fs::read_to_string(app.join("shared/log/restarts")).unwrap(),
        "restarted\n".repeat(3)
    );

    // A fixed commit, then a rollback to the good one.
    std::fs::remove_file(repo.dir.join("BROKEN")).unwrap();
    let fixed = repo.commit(&[("README", "fixed\n")], "fixed");
    site.apply_live(&[]).success();
    assert_eq!(live_revision(&app), fixed);
    let out = site.cmd(["rollback", "staging"]).run().success();
    assert!(
        out.stdout.contains("changed      release"),
        "{}",
        out.stdout
    );
    assert_eq!(current(&app), good_release);
    assert_eq!(
        releases(&app).len(),
        1,
        "the release rolled back from is removed"
    );
    // Nothing before the first release: the rollback fails and leaves it live.
    let out = site.cmd(["rollback", "staging"]).run().code(1);
    assert!(out.stdout.contains("no release before"), "{}", out.stdout);
    assert_eq!(current(&app), good_release);
}

#[test]
fn a_git_checkout_follows_its_reference_and_discards_local_changes() {
    let site = Site::new("deploy-git");
    let repo = Repo::new(site.scratch("theme"));
    let v1 = repo.commit(&[("theme.rb", "v1\n")], "v1");
    repo.git(&["tag", "v1"]);
    let v2 = repo.commit(&[("theme.rb", "v2\n")], "v2");
    let tree = site.scratch("live/theme");
    site.write("group_vars/all/vars.yml", "theme_ref: v1\n");
    site.write(
        "plan/git.yml",
        &format!(
            "resources:\n  - git: {}\n    repo: {}\n    ref: \"{{{{ theme_ref }}}}\"\n",
            tree.display(),
            repo.dir.display()
        ),
    );
    let head = || Repo { dir: tree.clone() }.git(&["rev-parse", "HEAD"]);
    site.apply_live(&[]).success();
    assert_eq!(head(), v1, "the tag");
    let out = site.apply_live(&[]).success();
    assert!(out.stdout.contains("1 ok, 0 changed"), "{}", out.stdout);
    // A local edit is discarded; untracked files stay.
    std::fs::write(tree.join("theme.rb"), "edited on the server\n").unwrap();
    std::fs::write(tree.join("untracked"), "x").unwrap();
    let out = site.apply_live(&[]).success();
    assert!(
        out.stdout.contains("local changes discarded"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("theme.rb")).unwrap(),
        "v1\n"
    );
    assert!(tree.join("untracked").exists());
    // A branch, then a full commit id.
    site.write("group_vars/all/vars.yml", "theme_ref: main\n");
    site.apply_live(&[]).success();
    assert_eq!(head(), v2);
    site.write("group_vars/all/vars.yml", &format!("theme_ref: {v1}\n"));
    site.apply_live(&[]).success();
    assert_eq!(head(), v1);
}

/// An HTTP server on 127.0.0.1 answering every request with `status`, until the test ends.
fn http_server(status: u16) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    port
}

#[test]
fn an_http_health_check_decides_whether_the_release_stays() {
    let (site, repo, app) = release_site("deploy-http-health");
    let up = http_server(200);
    let down = http_server(503);
    let plan = std::fs::read_to_string(site.cfg().join("plan/release.yml")).unwrap();
    let with_url = |port: u16| {
        plan.replace(
            "command: \"test ! -f BROKEN\"",
            &format!("url: \"http://127.0.0.1:{port}/health/controls\""),
        )
    };
    site.write("plan/release.yml", &with_url(up));
    let first = repo.commit(&[("README", "one\n")], "one");
    site.apply_live(&[]).success();
    assert_eq!(live_revision(&app), first);
    site.write("plan/release.yml", &with_url(down));
    repo.commit(&[("README", "two\n")], "two");
    let out = site.apply_live(&[]).code(1);
    assert!(out.stdout.contains("answered 503"), "{}", out.stdout);
    assert!(out.stdout.contains("switched back"), "{}", out.stdout);
    assert_eq!(live_revision(&app), first);
}
