//! The production features on the real binary with a real PostgreSQL 15: verify, retention,
//! incremental backups, encryption, parallel push, prefetch, drill.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Site, Store, batches, write_setting};

fn insert_batch(site: &Site, batch: i32, rows: i32) {
    let mut client = site.primary.connect("postgres");
    client
        .batch_execute("create table if not exists t (batch int, n int, note text)")
        .unwrap();
    client
        .execute(
            "insert into t select $1, g, 'row ' || g from generate_series(1, $2) g",
            &[&batch, &rows],
        )
        .unwrap();
    site.switch_and_wait_archived(&site.primary.url("postgres"));
}

fn json(out: &ops_testkit::Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn verify_passes_on_a_sound_archive_and_names_gaps_and_damage() {
    let site = Site::new(Store::File);
    site.run(&["backup"]).success();
    for batch in 1..=4 {
        insert_batch(&site, batch, 1000);
    }
    let report = json(&site.run(&["verify", "--json"]).success());
    assert_eq!(report["problems"], serde_json::json!([]));
    assert!(report["chunks_checked"].as_u64().unwrap() > 100);
    assert!(report["wal_files_checked"].as_u64().unwrap() >= 5);

    // Remove a segment in the middle of the chain and damage a chunk.
    let wal_dir = site.tmp.path().join("archive/wal");
    let mut segments: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    segments.sort();
    let gone = segments[segments.len() - 2].clone();
    std::fs::remove_file(wal_dir.join(&gone)).unwrap();
    let chunk = files_under(&site.tmp.path().join("archive/chunks"))
        .into_iter()
        .next()
        .unwrap();
    let mut bytes = std::fs::read(&chunk).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&chunk, bytes).unwrap();

    let out = site.run(&["verify"]).code(1);
    assert!(
        out.stdout.contains(&format!("{gone} missing")),
        "{}",
        out.stdout
    );
    let chunk_name = chunk.file_name().unwrap().to_str().unwrap();
    assert!(out.stdout.contains(chunk_name), "{}", out.stdout);
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
}

#[test]
fn retention_keeps_the_newest_by_end_time_and_what_they_need() {
    let site = Site::new(Store::File);
    let mut names = Vec::new();
    for batch in 1..=3 {
        let out = json(&site.run(&["backup", "--json"]).success());
        names.push(out["name"].as_str().unwrap().to_owned());
        insert_batch(&site, batch, 500);
        std::thread::sleep(Duration::from_millis(1100));
    }
    // Make the newest-named backup the oldest by its recorded end: retention must go by end time.
    let marker = site
        .tmp
        .path()
        .join(format!("archive/backups/{}/backup.json", names[2]));
    let mut info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    info["stop_time"] = serde_json::json!("2000-01-01T00:00:00Z");
    std::fs::write(&marker, serde_json::to_vec(&info).unwrap()).unwrap();

    let archive_files = || files_under(&site.tmp.path().join("archive")).len();
    let before = archive_files();
    let plan = json(&site.run(&["delete", "--retain", "2", "--json"]).success());
    assert_eq!(plan["deleted_backups"], serde_json::json!([names[2]]));
    assert_eq!(plan["kept"], serde_json::json!([names[0], names[1]]));
    assert_eq!(plan["confirmed"], false);
    assert_eq!(archive_files(), before, "a dry run deletes nothing");
    site.run(&["delete", "--retain", "2"])
        .success()
        .stdout_has("run again with --confirm");

    // Put the marker back as it was, and keep only the newest: the WAL before it goes, the chunks
    // it shares with the deleted backups stay.
    info["stop_time"] = serde_json::json!(chrono::Utc::now());
    std::fs::write(&marker, serde_json::to_vec(&info).unwrap()).unwrap();
    let done = json(
        &site
            .run(&["delete", "--retain", "1", "--confirm", "--json"])
            .success(),
    );
    assert_eq!(
        done["deleted_backups"],
        serde_json::json!([names[0], names[1]])
    );
    assert!(!done["deleted_wal_files"].as_array().unwrap().is_empty());
    assert!(archive_files() < before);
    let listed = json(&site.run(&["list", "--json"]).success());
    assert_eq!(listed.as_array().unwrap().len(), 1);
    site.run(&["verify"]).success();
    let restored = site.restore_latest("after-retention");
    assert_eq!(batches(&mut restored.connect()), vec![1, 2, 3]);
    site.run(&["delete", "--retain", "0"]).code(2);
}

#[test]
fn an_unchanged_database_costs_almost_nothing_to_back_up_again() {
    let site = Site::new(Store::File);
    let mut client = site.primary.connect("postgres");
    client
        .batch_execute(
            "create table big with (autovacuum_enabled = off) as \
             select g, md5(g::text) || md5((g * 7)::text) as filler from generate_series(1, 400000) g",
        )
        .unwrap();
    // Settle the table (hint bits, visibility map) so that only real changes would differ.
    client
        .batch_execute("vacuum (freeze, analyze) big")
        .unwrap();
    client.batch_execute("checkpoint").unwrap();
    let first = json(&site.run(&["backup", "--json"]).success());
    let second = json(&site.run(&["backup", "--json"]).success());
    let database_bytes = second["size_bytes"].as_u64().unwrap();
    let stored_again = second["stored_bytes"].as_u64().unwrap();
    assert!(
        database_bytes > 40 << 20,
        "a database worth measuring: {database_bytes}"
    );
    assert!(
        stored_again * 20 <= database_bytes,
        "the second backup stored {stored_again} of {database_bytes} bytes (more than 5%)"
    );
    assert!(first["stored_bytes"].as_u64().unwrap() > stored_again * 10);
    // The first backup can go: the second one restores on its own.
    site.run(&["delete", "--retain", "1", "--confirm"])
        .success();
    let restored = site.restore_latest("incremental");
    let rows: i64 = restored
        .connect()
        .query_one("select count(*) from big", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 400_000);
}

#[test]
fn an_encrypted_archive_holds_no_plaintext_and_restores_with_the_private_key() {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let site = Site::with_settings(Store::File, &[("WAL_ARCHIVE_AGE_RECIPIENTS", &recipient)]);
    let canary = "canary-requester-7c1e@example.org";
    let mut client = site.primary.connect("postgres");
    client
        .batch_execute(&format!(
            "create table secrets as select g, '{canary}' as email from generate_series(1, 2000) g"
        ))
        .unwrap();
    site.run(&["backup"]).success();
    client
        .batch_execute(&format!(
            "insert into secrets select g, '{canary}' from generate_series(1, 100) g"
        ))
        .unwrap();
    site.switch_and_wait_archived(&site.primary.url("postgres"));
    // Taken at once, before a checkpoint can recycle the segment.
    let last_archived: String = client
        .query_one("select last_archived_wal from pg_stat_archiver", &[])
        .unwrap()
        .get(0);
    let mut other_segment =
        std::fs::read(site.primary.data_dir().join("pg_wal").join(&last_archived)).unwrap();

    for file in files_under(&site.tmp.path().join("archive")) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "plaintext in {}",
            file.display()
        );
    }
    // The server's settings hold only the public key: it cannot read its own archive.
    let dest = site.tmp.subdir("f").join("RECOVERYXLOG");
    let listed = std::fs::read_dir(site.tmp.path().join("archive/wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.len() == 24)
        .unwrap();
    site.run(&["fetch", &listed, dest.to_str().unwrap()])
        .code(200)
        .stderr_has("encrypted with age");
    site.run(&["verify"])
        .code(3)
        .stderr_has("encrypted with age");
    // It still tells a re-push of other content under an archived name, by the keyed identity.
    other_segment[3 << 20] ^= 0x01;
    let staged = site.tmp.subdir("stage").join(&last_archived);
    std::fs::write(&staged, other_segment).unwrap();
    site.run(&["push", staged.to_str().unwrap()])
        .code(5)
        .stderr_has("already archived with different content");

    // With the private key (kept elsewhere), everything restores.
    let key_file = site.tmp.subdir("keys").join("backup.key");
    std::fs::write(
        &key_file,
        format!(
            "# created by the test\n{}\n",
            age::secrecy::ExposeSecret::expose_secret(&identity.to_string())
        ),
    )
    .unwrap();
    write_setting(
        &site.envdir,
        "WAL_ARCHIVE_AGE_IDENTITY_FILE",
        key_file.to_str().unwrap(),
    );
    site.run(&["verify"]).success();
    let restored = site.restore_latest("decrypted");
    let count: i64 = restored
        .connect()
        .query_one("select count(*) from secrets where email = $1", &[&canary])
        .unwrap()
        .get(0);
    assert_eq!(count, 2100);

    // Mixing encrypted and plain objects in one archive is refused.
    std::fs::remove_file(site.envdir.join("WAL_ARCHIVE_AGE_RECIPIENTS")).unwrap();
    std::fs::remove_file(site.envdir.join("WAL_ARCHIVE_AGE_IDENTITY_FILE")).unwrap();
    site.run(&["backup"]).code(5).stderr_has("cannot mix them");
}

#[test]
fn a_passphrase_archive_round_trips() {
    let site = Site::with_settings(
        Store::File,
        &[("WAL_ARCHIVE_PASSPHRASE", "correct horse battery staple")],
    );
    insert_batch(&site, 1, 100);
    site.run(&["backup"]).success();
    insert_batch(&site, 2, 100);
    let restored = site.restore_latest("passphrase");
    assert_eq!(batches(&mut restored.connect()), vec![1, 2]);
    let out = site.run(&["config", "show"]).success();
    assert!(
        out.stdout.contains("WAL_ARCHIVE_PASSPHRASE") && !out.stdout.contains("correct horse"),
        "{}",
        out.stdout
    );
}

#[test]
fn push_archives_ready_segments_ahead_and_trusts_only_matching_records() {
    // Archiving fails at first, so segments pile up as .ready; then it is fixed.
    let site = Site::with_settings(Store::File, &[("WALG_UPLOAD_CONCURRENCY", "4")]);
    let mut client = site.primary.connect("postgres");
    client
        .batch_execute("alter system set archive_command = 'false'")
        .unwrap();
    client.batch_execute("select pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    client
        .batch_execute("create table t (batch int, n int)")
        .unwrap();
    for _ in 0..6 {
        client
            .batch_execute("insert into t select 1, g from generate_series(1, 1000) g")
            .unwrap();
        client.batch_execute("select pg_switch_wal()").unwrap();
    }
    let ready = std::fs::read_dir(site.primary.data_dir().join("pg_wal/archive_status"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".ready")
        })
        .count();
    assert!(ready >= 5, "{ready} segments waiting");

    // A stale record naming another version of one waiting segment: never trusted.
    let mut waiting: Vec<String> =
        std::fs::read_dir(site.primary.data_dir().join("pg_wal/archive_status"))
            .unwrap()
            .filter_map(|e| {
                e.unwrap()
                    .file_name()
                    .to_str()?
                    .strip_suffix(".ready")
                    .map(str::to_owned)
            })
            .collect();
    waiting.sort();
    let markers = site
        .primary
        .data_dir()
        .join("pg_wal/wal-archive.d/uploaded");
    std::fs::create_dir_all(&markers).unwrap();
    std::fs::write(markers.join(&waiting[1]), "1 1 16777216 1.000000000").unwrap();
    ops_testkit::chown_postgres(&site.primary.data_dir().join("pg_wal/wal-archive.d"));

    client
        .batch_execute("alter system reset archive_command")
        .unwrap();
    client.batch_execute("select pg_reload_conf()").unwrap();
    site.switch_and_wait_archived(&site.primary.url("postgres"));
    let log = site.primary.log();
    assert!(
        log.contains("was archived by an earlier parallel push"),
        "no push was answered from a record:\n{log}"
    );
    for name in &waiting {
        assert!(
            site.stored_file(&format!("wal/{name}")).exists(),
            "{name} archived"
        );
    }
    site.run(&["backup"]).success();
    site.run(&["verify"]).success();
}

#[test]
fn fetch_prefetches_the_next_segments_and_checks_them_at_use() {
    let site = Site::new(Store::File);
    for batch in 1..=5 {
        insert_batch(&site, batch, 200);
    }
    let mut segments: Vec<String> = std::fs::read_dir(site.tmp.path().join("archive/wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    segments.sort();
    // A data directory being recovered: fetch runs in it, as restore_command does.
    let recovering = site.tmp.subdir("recovering");
    std::fs::create_dir_all(recovering.join("pg_wal")).unwrap();
    ops_testkit::chown_postgres(&recovering);
    let fetch = |name: &str| {
        site.tool()
            .env("PGDATA", &recovering)
            .current_dir(&recovering)
            .args(["-v", "fetch", name, "pg_wal/RECOVERYXLOG"])
            .run()
    };
    fetch(&segments[0]).success();
    let prefetched = recovering.join("pg_wal/wal-archive.d/prefetch");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(prefetched.join(&segments[1]).exists() && prefetched.join(&segments[2]).exists()) {
        assert!(
            Instant::now() < deadline,
            "the next segments were not prefetched"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    fetch(&segments[1])
        .success()
        .stderr_has("restored from the prefetch directory");
    assert_eq!(
        std::fs::read(recovering.join("pg_wal/RECOVERYXLOG")).unwrap(),
        fetch_direct(&site, &segments[1])
    );

    // A prefetched copy damaged on disk is not used: the archive's copy is.
    while !prefetched.join(&segments[3]).exists() {
        assert!(Instant::now() < deadline, "prefetch did not continue");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut damaged = std::fs::read(prefetched.join(&segments[3])).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    std::fs::write(prefetched.join(&segments[3]), damaged).unwrap();
    fetch(&segments[3])
        .success()
        .stderr_has("prefetched copy is damaged");
    assert_eq!(
        std::fs::read(recovering.join("pg_wal/RECOVERYXLOG")).unwrap(),
        fetch_direct(&site, &segments[3])
    );
}

fn fetch_direct(site: &Site, name: &str) -> Vec<u8> {
    let out = site.tmp.subdir("direct").join(name);
    site.run(&["fetch", name, out.to_str().unwrap()]).success();
    std::fs::read(out).unwrap()
}

#[test]
fn drill_restores_checks_reports_and_cleans_up() {
    let site = Site::new(Store::File);
    let drills = site.tmp.subdir("drills");
    let metrics = site.tmp.subdir("metrics");
    write_setting(
        &site.envdir,
        "WAL_ARCHIVE_DRILL_DIR",
        drills.to_str().unwrap(),
    );
    write_setting(&site.envdir, "OPS_METRICS_DIR", metrics.to_str().unwrap());
    insert_batch(&site, 1, 300);
    // As on Debian, where they live in /etc/postgresql: the backup has no configuration files,
    // and the drill's scratch copy must start all the same. (The running server read them at start.)
    for name in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
        std::fs::remove_file(site.primary.data_dir().join(name)).unwrap();
    }
    site.run(&["backup"]).success();
    insert_batch(&site, 2, 300);

    let report = json(
        &site
            .run(&["drill", "--check-sql", "select count(*) from t", "--json"])
            .success(),
    );
    assert_eq!(report["check_result"], "600");
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0);
    assert!(report["recovered_to"].as_str().is_some());
    assert_eq!(
        std::fs::read_dir(&drills).unwrap().count(),
        0,
        "the scratch copy is removed"
    );
    let prom = std::fs::read_to_string(metrics.join("wal_archive_drill.prom")).unwrap();
    assert!(prom.contains("wal_archive_drill_success 1"), "{prom}");
    assert!(prom.contains("wal_archive_drill_rto_seconds "), "{prom}");

    // A check that fails fails the drill, and the metrics say so.
    site.run(&["drill", "--check-sql", "select * from no_such_table"])
        .code(9)
        .stderr_has("no_such_table");
    let prom = std::fs::read_to_string(metrics.join("wal_archive_drill.prom")).unwrap();
    assert!(prom.contains("wal_archive_drill_success 0"), "{prom}");
    assert_eq!(std::fs::read_dir(&drills).unwrap().count(), 0);
    // The primary was never touched by the drill's server.
    assert_eq!(
        site.primary.psql("postgres", "select count(*) from t"),
        "600"
    );
}
