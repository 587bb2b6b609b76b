//! `deploy apply` on the file-system resources, handlers, check mode, diffs and errors.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::{Site, result, summary};

const SECRET: &str = "s3cret-db-pw-staging";

/// A plan of every resource that works under `--root`, with a vault secret in a template and
/// an envdir, and a handler.
fn base_site(label: &str) -> Site {
    let site = Site::new(label);
    site.write(
        "group_vars/all/vars.yml",
        "site: foi\nworkers: 2\ndb_password: \"{{ vault_db_password }}\"\nswap_size: 1M\n",
    );
    site.write_vault(
        "group_vars/staging/vault.yml",
        &format!("vault_db_password: {SECRET}\n"),
    );
    site.write(
        "templates/app.conf.j2",
        "site={{ site }}\npassword={{ db_password }}\nworkers={{ workers }}\n{% if env == 'production' %}production=true\n{% endif %}",
    );
    site.write(
        "plan/10-base.yml",
        r#"resources:
  - directory: /srv/{{ site }}
    mode: "0750"
  - file: /srv/{{ site }}/app.conf
    template: app.conf.j2
    mode: "0640"
    notify: restart app
  - file: /srv/{{ site }}/motd
    content: "welcome to {{ site }} ({{ env }})\n"
  - symlink: /srv/current
    target: /srv/{{ site }}
  - envdir: /etc/wal-archive/env
    vars:
      WAL_ARCHIVE_STORE: "s3://bucket/{{ env }}"
      PGPASSWORD: "{{ db_password }}"
  - cron: foi-stats
    jobs:
      - {name: nightly statistics, schedule: "0 3 * * *", user: postgres, command: "stats-anonymize run"}
  - systemd: metabase.service
    content: "[Service]\nExecStart=/usr/bin/java -jar /opt/metabase.jar\n"
    enabled: true
    state: started
  - package: [nginx, postfix]
  - swapfile: /swapfile
    size: "{{ swap_size }}"
handlers:
  - name: restart app
    systemd: app.service
    action: restart
"#,
    );
    site
}

#[test]
fn a_second_apply_changes_nothing() {
    let site = base_site("deploy-idempotent");
    let first = site.apply_root(&[]).success();
    assert!(
        first
            .stdout
            .contains("changed      file             /srv/foi/app.conf"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("stage1: 0 ok, 8 changed, 0 failed, 2 skipped"),
        "{}",
        first.stdout
    );
    let root = site.root();
    let conf = std::fs::read_to_string(root.join("srv/foi/app.conf")).unwrap();
    assert_eq!(conf, format!("site=foi\npassword={SECRET}\nworkers=2\n"));
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("srv/foi/app.conf"), 0o640);
    assert_eq!(mode("srv/foi"), 0o750);
    assert_eq!(mode("srv/foi/motd"), 0o644);
    assert_eq!(
        std::fs::read_link(root.join("srv/current")).unwrap(),
        std::path::Path::new("/srv/foi")
    );
    assert_eq!(mode("etc/wal-archive/env"), 0o700);
    assert_eq!(
        mode("etc/wal-archive/env/PGPASSWORD"),
        0o600,
        "secrets are not world-readable"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/wal-archive/env/PGPASSWORD")).unwrap(),
        format!("{SECRET}\n")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/wal-archive/env/WAL_ARCHIVE_STORE")).unwrap(),
        "s3://bucket/staging\n"
    );
    let cron = std::fs::read_to_string(root.join("etc/cron.d/foi-stats")).unwrap();
    assert!(
        cron.contains("0 3 * * * postgres stats-anonymize run\n"),
        "{cron}"
    );
    assert!(
        std::fs::read_to_string(root.join("etc/systemd/system/metabase.service"))
            .unwrap()
            .contains("ExecStart=")
    );
    assert_eq!(
        std::fs::metadata(root.join("swapfile")).unwrap().len(),
        1 << 20
    );
    assert!(
        std::fs::read_to_string(root.join("etc/fstab"))
            .unwrap()
            .contains("/swapfile none swap sw 0 0")
    );

    let second = site.apply_root(&[]).success();
    assert!(
        second
            .stdout
            .contains("stage1: 8 ok, 0 changed, 0 failed, 1 skipped"),
        "{}",
        second.stdout
    );
    let third = site.apply_root(&["--json"]).success();
    let s = summary(&third);
    assert_eq!(
        (s["changed"].as_u64(), s["failed"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
}

#[test]
fn check_mode_changes_nothing_and_says_what_would_change() {
    let site = base_site("deploy-check");
    let out = site.apply_root(&["--check"]).success();
    assert!(
        out.stdout
            .contains("would change file             /srv/foi/app.conf  (new file)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("(check mode: nothing was changed)"),
        "{}",
        out.stdout
    );
    assert!(
        !site.root().exists() || std::fs::read_dir(site.root()).unwrap().next().is_none(),
        "check mode wrote files"
    );
    // After a real run, a changed variable shows up as the one change in check mode.
    site.apply_root(&[]).success();
    std::fs::write(site.scratch("more.yml"), "workers: 4\n").unwrap();
    let more = site.scratch("more.yml");
    let out = site
        .apply_root(&["--check", "--diff", "-e", more.to_str().unwrap()])
        .success();
    assert!(
        out.stdout.contains("-workers=2\n    +workers=4\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(", 1 would change,"), "{}", out.stdout);
    assert!(
        std::fs::read_to_string(site.root().join("srv/foi/app.conf"))
            .unwrap()
            .contains("workers=2")
    );
}

#[test]
fn diffs_and_json_mask_vault_secrets() {
    let site = base_site("deploy-mask");
    let out = site.apply_root(&["--diff"]).success();
    assert!(out.stdout.contains("+password=********"), "{}", out.stdout);
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    let site = base_site("deploy-mask-json");
    let out = site.apply_root(&["--diff", "--json"]).success();
    assert!(!out.stdout.contains(SECRET));
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let conf = result(&doc, "/srv/foi/app.conf");
    assert_eq!(conf["status"], "changed");
    assert!(
        conf["diff"]
            .as_str()
            .unwrap()
            .contains("+password=********"),
        "{conf}"
    );
    assert_eq!(doc["hosts"][0]["transport"], "local");
}

#[test]
fn a_failed_validation_leaves_the_old_file() {
    let site = Site::new("deploy-validate");
    let target = site.scratch("live/nginx.conf");
    site.write("group_vars/all/vars.yml", "listen: 80\n");
    site.write(
        "plan/web.yml",
        &format!(
            "resources:\n  - file: {}\n    content: \"listen {{{{ listen }}}};\\n\"\n    validate: \"grep -q '^listen [0-9]*;$' %s\"\n",
            target.display()
        ),
    );
    site.apply_live(&[]).success();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "listen 80;\n");
    std::fs::write(site.scratch("bad.yml"), "listen: eighty\n").unwrap();
    let bad = site.scratch("bad.yml");
    let out = site.apply_live(&["-e", bad.to_str().unwrap()]).code(1);
    assert!(out.stdout.contains("failed       file"), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "listen 80;\n",
        "old file kept"
    );
    let names: Vec<_> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
}

#[test]
fn handlers_run_once_at_the_end_and_only_when_notified() {
    let site = Site::new("deploy-handlers");
    let trace = site.scratch("trace");
    let dir = site.scratch("live");
    site.write("group_vars/all/vars.yml", "version: 1\n");
    site.write(
        "plan/app.yml",
        &format!(
            r#"resources:
  - file: {d}/a.conf
    content: "a {{{{ version }}}}\n"
    notify: [reload app]
  - file: {d}/b.conf
    content: "b {{{{ version }}}}\n"
    notify: reload app
  - command: "echo resource-c >> {t}"
    creates: {d}/c.done
  - file: {d}/c.done
    content: ""
  - file: {d}/quiet.conf
    content: "q\n"
    notify: never notified
handlers:
  - name: reload app
    command: "echo handler >> {t}"
  - name: never notified
    command: "echo wrong >> {t}"
"#,
            d = dir.display(),
            t = trace.display()
        ),
    );
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("quiet.conf"), "q\n").unwrap();
    let out = site.apply_live(&[]).success();
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap(),
        "resource-c\nhandler\n"
    );
    assert!(
        out.stdout
            .contains("changed      handler          reload app"),
        "{}",
        out.stdout
    );
    let out = site.apply_live(&[]).success();
    assert!(out.stdout.contains("0 changed"), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap(),
        "resource-c\nhandler\n",
        "nothing ran again"
    );
}

#[test]
fn commands_are_guarded_by_creates_and_unless() {
    let site = Site::new("deploy-commands");
    let dir = site.scratch("live");
    std::fs::create_dir_all(&dir).unwrap();
    site.write(
        "plan/cmd.yml",
        &format!(
            r#"resources:
  - command: "touch {d}/made && echo x >> {d}/runs"
    creates: {d}/made
  - command: "echo 'setting=on' >> {d}/settings"
    unless: "grep -q setting=on {d}/settings"
  - command: "exit 3"
    name: a failing command
    unless: "test -f {d}/skip-failing"
"#,
            d = dir.display()
        ),
    );
    std::fs::write(dir.join("skip-failing"), "").unwrap();
    site.apply_live(&[]).success();
    let out = site.apply_live(&[]).success();
    assert!(out.stdout.contains("3 ok, 0 changed"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(dir.join("runs")).unwrap(), "x\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("settings")).unwrap(),
        "setting=on\n"
    );
    std::fs::remove_file(dir.join("skip-failing")).unwrap();
    let out = site.apply_live(&[]).code(1);
    assert!(
        out.stdout
            .contains("failed       command          a failing command"),
        "{}",
        out.stdout
    );
}

#[test]
fn systemd_packages_and_swap_are_planned_in_check_mode() {
    // No service manager or package changes in a test: these run live in --check only, which
    // queries dpkg and systemctl but changes nothing.
    let site = Site::new("deploy-system-check");
    let swap = site.scratch("swapfile");
    site.write(
        "plan/system.yml",
        &format!(
            r#"resources:
  - systemd: deploy-test-unit-that-does-not-exist.service
    content: "[Service]\nExecStart=/bin/true\n"
    enabled: true
    state: started
  - package: [coreutils]
  - package: deploy-test-package-that-does-not-exist
  - swapfile: {s}
    size: 64M
"#,
            s = swap.display()
        ),
    );
    let out = site.apply_live(&["--check", "--json"]).success();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let unit = result(&doc, "deploy-test-unit-that-does-not-exist.service");
    assert_eq!(unit["status"], "changed");
    assert!(
        unit["message"].as_str().unwrap().contains("new file"),
        "{unit}"
    );
    assert!(
        unit["message"].as_str().unwrap().contains("enable"),
        "{unit}"
    );
    assert_eq!(result(&doc, "coreutils")["status"], "ok");
    let missing = result(&doc, "deploy-test-package-that-does-not-exist");
    assert_eq!(missing["status"], "changed", "{missing}");
    assert!(
        missing["message"]
            .as_str()
            .unwrap()
            .contains("would install"),
        "{missing}"
    );
    assert_eq!(
        result(&doc, &swap.display().to_string())["status"],
        "changed"
    );
    assert!(!swap.exists());
    assert!(
        !std::path::Path::new("/etc/systemd/system/deploy-test-unit-that-does-not-exist.service")
            .exists()
    );
}

#[test]
fn absent_files_directories_and_links_are_removed() {
    let site = Site::new("deploy-absent");
    let root = site.root();
    for dir in ["etc/nginx/sites-enabled", "var/old/sub"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("etc/old.conf"), "x").unwrap();
    std::fs::write(root.join("var/old/sub/f"), "x").unwrap();
    std::os::unix::fs::symlink(
        "/etc/nginx/sites-available/default",
        root.join("etc/nginx/sites-enabled/default"),
    )
    .unwrap();
    std::fs::write(root.join("etc/in-the-way"), "a file").unwrap();
    site.write(
        "plan/a.yml",
        "resources:\n  - file: /etc/old.conf\n    state: absent\n  - directory: /var/old\n    state: absent\n  - symlink: /etc/nginx/sites-enabled/default\n    state: absent\n  - symlink: /etc/in-the-way\n    target: /etc/old.conf\n    force: true\n  - file: /etc/never-existed\n    state: absent\n",
    );
    let out = site.apply_root(&[]).success();
    assert!(out.stdout.contains("1 ok, 4 changed"), "{}", out.stdout);
    assert!(!root.join("etc/old.conf").exists());
    assert!(!root.join("var/old").exists());
    assert!(std::fs::symlink_metadata(root.join("etc/nginx/sites-enabled/default")).is_err());
    assert_eq!(
        std::fs::read_link(root.join("etc/in-the-way")).unwrap(),
        std::path::Path::new("/etc/old.conf")
    );
    let out = site.apply_root(&[]).success();
    assert!(out.stdout.contains("5 ok, 0 changed"), "{}", out.stdout);
}

#[test]
fn when_src_and_the_layers_of_variables() {
    let site = Site::new("deploy-layers");
    site.write(
        "inventory.yml",
        "environments:\n  staging:\n    hosts:\n      stage1: {transport: local, vars: {layer: host, workers: 3}}\n  production:\n    hosts:\n      web1: {transport: local}\n",
    );
    site.write(
        "group_vars/all/vars.yml",
        "layer: all\nworkers: 1\nname: foi\n",
    );
    site.write(
        "group_vars/staging/vars.yml",
        "layer: staging\nname: foi-staging\n",
    );
    std::fs::create_dir_all(site.cfg().join("files")).unwrap();
    std::fs::write(
        site.cfg().join("files/logo.png"),
        [0x89, b'P', b'N', b'G', 0, 0xff],
    )
    .unwrap();
    site.write(
        "plan/a.yml",
        "resources:\n  - file: /etc/layers\n    content: \"{{ layer }} {{ workers }} {{ name }} {{ env }} {{ inventory_hostname }}\\n\"\n  - file: /srv/logo.png\n    src: logo.png\n  - directory: /srv/production-only\n    when: \"env == 'production'\"\n  - directory: /srv/staging-only\n    when: \"{{ env == 'staging' }}\"\n",
    );
    std::fs::write(site.scratch("extra.yml"), "workers: 9\n").unwrap();
    let extra = site.scratch("extra.yml");
    let out = site.apply_root(&["-e", extra.to_str().unwrap()]).success();
    assert!(
        out.stdout
            .contains("skipped      directory        /srv/production-only  (when: false)"),
        "{}",
        out.stdout
    );
    let root = site.root();
    // Host vars above the environment's, -e above everything.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/layers")).unwrap(),
        "host 9 foi-staging staging stage1\n"
    );
    assert_eq!(
        std::fs::read(root.join("srv/logo.png")).unwrap(),
        [0x89, b'P', b'N', b'G', 0, 0xff],
        "src is copied byte for byte"
    );
    assert!(root.join("srv/staging-only").is_dir());
    assert!(!root.join("srv/production-only").exists());
}
