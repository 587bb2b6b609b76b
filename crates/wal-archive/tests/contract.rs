//! PostgreSQL's archive and restore contract, point by point, on the real binary with a real
//! PostgreSQL 15 archiving through it.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ops_testkit::{Fault, FaultProxy, PgCluster, PgOptions, S3Server};
use support::{Site, Store};

/// Archives one segment and returns its name and its content, fetched back from the archive.
fn archived_segment(site: &Site) -> (String, Vec<u8>) {
    let mut client = site.primary.connect("postgres");
    client
        .batch_execute(
            "create table if not exists filler as select g from generate_series(1, 1000) g",
        )
        .unwrap();
    site.switch_and_wait_archived(&site.primary.url("postgres"));
    let name: String = client
        .query_one("select last_archived_wal from pg_stat_archiver", &[])
        .unwrap()
        .get(0);
    let out = site.tmp.subdir("fetched").join(&name);
    site.run(&["fetch", &name, out.to_str().unwrap()]).success();
    (name.clone(), std::fs::read(&out).unwrap())
}

/// Writes `content` as `name` in a fresh directory the postgres user can read.
fn stage(site: &Site, name: &str, content: &[u8]) -> PathBuf {
    let dir = site.tmp.subdir(&format!("stage-{}", rand_suffix()));
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A push compresses a segment in pieces, each its own frame: every compression method reads
/// back byte for byte (fetch checks the content's SHA-256), and a re-push recognises it.
#[test]
fn pushed_segments_round_trip_with_every_compression() {
    for (method, smaller) in [("zstd", true), ("lz4", true), ("none", false)] {
        let site = Site::with_settings(Store::File, &[("WALG_COMPRESSION_METHOD", method)]);
        let (name, content) = archived_segment(&site);
        assert_eq!(content.len(), 16 << 20, "{method}");
        let stored = std::fs::metadata(site.stored_file(&format!("wal/{name}")))
            .unwrap()
            .len();
        assert_eq!(stored < 8 << 20, smaller, "{method}: {stored} bytes stored");
        let again = stage(&site, &name, &content);
        site.run(&["push", again.to_str().unwrap()])
            .success()
            .stderr_has("already archived with identical content");
    }
}

#[test]
fn duplicate_push_identical_is_accepted_and_different_content_is_refused() {
    for store in [Store::File, Store::S3(S3Server::start())] {
        let site = Site::new(store);
        let (name, content) = archived_segment(&site);
        assert_eq!(content.len(), 16 << 20);
        let stored_before = std::fs::read(site.stored_file(&format!("wal/{name}"))).unwrap();

        let same = stage(&site, &name, &content);
        site.run(&["push", same.to_str().unwrap()])
            .success()
            .stderr_has("already archived with identical content");
        // With another compression the stored payload differs from the new one: the contents
        // are compared.
        let push_lz4 = |path: &PathBuf| {
            site.tool()
                .env("WALG_COMPRESSION_METHOD", "lz4")
                .args(["push", path.to_str().unwrap()])
                .run()
        };
        push_lz4(&same)
            .success()
            .stderr_has("already archived with identical content");

        let mut changed = content.clone();
        changed[200_000] ^= 0xff;
        let different = stage(&site, &name, &changed);
        site.run(&["push", different.to_str().unwrap()])
            .code(5)
            .one_line_error()
            .stderr_has("already archived with different content")
            .stderr_has("refusing to overwrite");
        push_lz4(&different)
            .code(5)
            .one_line_error()
            .stderr_has("already archived with different content");
        assert_eq!(
            std::fs::read(site.stored_file(&format!("wal/{name}"))).unwrap(),
            stored_before,
            "never overwritten"
        );
    }
}

/// Earlier versions checked a pushed file by the SHA-256 of its content; those objects still open,
/// and a re-push of the same file is still recognised.
#[test]
fn segments_stored_with_a_content_checksum_still_fetch_and_match() {
    let site = Site::new(Store::File);
    let (name, content) = archived_segment(&site);
    let stored = site.stored_file(&format!("wal/{name}"));
    let earlier = wal_archive::archive::seal(&content, wal_archive::archive::Compression::Zstd);
    std::fs::write(&stored, &earlier).unwrap();

    let out = site.tmp.subdir("refetched").join(&name);
    site.run(&["fetch", &name, out.to_str().unwrap()]).success();
    assert_eq!(std::fs::read(&out).unwrap(), content);
    let same = stage(&site, &name, &content);
    site.run(&["push", same.to_str().unwrap()])
        .success()
        .stderr_has("already archived with identical content");
    let mut changed = content.clone();
    changed[9_000_000] ^= 0x01;
    let different = stage(&site, &name, &changed);
    site.run(&["push", different.to_str().unwrap()])
        .code(5)
        .stderr_has("already archived with different content");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        earlier,
        "never overwritten"
    );
}

#[test]
fn another_clusters_wal_is_refused() {
    let site = Site::new(Store::File);
    archived_segment(&site);
    let other = PgCluster::start(&PgOptions::default());
    let mut client = other.connect("postgres");
    client.batch_execute("create table x as select 1").unwrap();
    let name: String = client
        .query_one("select pg_walfile_name(pg_switch_wal() - 1)", &[])
        .unwrap()
        .get(0);
    let foreign = std::fs::read(other.data_dir().join("pg_wal").join(&name)).unwrap();
    let staged = stage(&site, &name, &foreign);

    // The segment's page header names another system than this cluster's pg_control.
    let stored = site.stored_file(&format!("wal/{name}"));
    let before = std::fs::read(&stored).ok();
    site.run(&["push", staged.to_str().unwrap()])
        .code(5)
        .one_line_error()
        .stderr_has("refusing another cluster's WAL");
    assert_eq!(
        std::fs::read(&stored).ok(),
        before,
        "nothing stored or replaced"
    );

    // The other cluster's own archive_command pointed at this archive: the archive says whose it is.
    site.tool()
        .env("PGDATA", other.data_dir())
        .args(["push", staged.to_str().unwrap()])
        .run()
        .code(5)
        .stderr_has("belongs to the cluster with system identifier");
}

#[test]
fn history_backup_and_partial_files_are_archived_and_other_names_refused() {
    let site = Site::new(Store::File);
    site.run(&["backup"]).success();
    site.switch_and_wait_archived(&site.primary.url("postgres"));
    let wal_dir = site.tmp.path().join("archive/wal");
    let names: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let backup_file = names
        .iter()
        .find(|n| n.ends_with(".backup"))
        .expect("pg_backup_stop's .backup file is archived");
    let fetched = site.tmp.subdir("f").join("label");
    site.run(&["fetch", backup_file, fetched.to_str().unwrap()])
        .success();
    assert!(
        std::fs::read_to_string(&fetched)
            .unwrap()
            .contains("START WAL LOCATION")
    );

    let (name, content) = archived_segment(&site);
    let partial = stage(&site, &format!("{name}.partial"), &content);
    site.run(&["push", partial.to_str().unwrap()]).success();
    let history = stage(
        &site,
        "00000002.history",
        b"1\t0/5000000\tno recovery target specified\n",
    );
    site.run(&["push", history.to_str().unwrap()]).success();
    let back = site.tmp.subdir("h").join("RECOVERYHISTORY");
    site.run(&["fetch", "00000002.history", back.to_str().unwrap()])
        .success();
    assert_eq!(
        std::fs::read(&back).unwrap(),
        b"1\t0/5000000\tno recovery target specified\n"
    );
    // A history file is never silently replaced either.
    let other_history = stage(&site, "00000002.history", b"1\t0/6000000\tother\n");
    site.run(&["push", other_history.to_str().unwrap()]).code(5);

    let junk = stage(&site, "postgresql.conf", b"x");
    site.run(&["push", junk.to_str().unwrap()])
        .code(2)
        .one_line_error()
        .stderr_has("not a file PostgreSQL archives");
}

#[test]
fn fetch_of_a_missing_file_exits_1_quietly_but_a_missing_archive_stops_recovery() {
    for store in [Store::File, Store::S3(S3Server::start())] {
        let site = Site::new(store);
        archived_segment(&site);
        let dest = site.tmp.subdir("f").join("RECOVERYXLOG");
        for name in [
            "00000005.history",
            "0000000100000000000000FE",
            "RECOVERYXLOG",
        ] {
            let out = site.run(&["fetch", name, dest.to_str().unwrap()]).code(1);
            assert!(
                out.stderr.is_empty(),
                "fetch of a missing file must be quiet: {}",
                out.stderr
            );
        }
        assert!(!dest.exists());

        // An unmounted directory or a mistyped prefix: every file is "missing", and ending
        // recovery there would silently lose everything after the backup.
        let (setting, wrong) = match &site.bucket {
            None => (
                "WALG_FILE_PREFIX",
                site.tmp.path().join("not-mounted").display().to_string(),
            ),
            Some(bucket) => ("WALG_S3_PREFIX", format!("s3://{bucket}/db/mistyped")),
        };
        site.tool()
            .env(setting, &wrong)
            .args(["fetch", "00000005.history", dest.to_str().unwrap()])
            .run()
            .code(200)
            .one_line_error()
            .stderr_has("holds no archive");
        assert!(!dest.exists());
    }
}

#[test]
fn corrupt_stored_object_is_detected_and_never_applied() {
    for store in [Store::File, Store::S3(S3Server::start())] {
        let site = Site::new(store);
        let (name, _) = archived_segment(&site);
        let stored = site.stored_file(&format!("wal/{name}"));
        let mut bytes = std::fs::read(&stored).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&stored, bytes).unwrap();
        let dest = site.tmp.subdir("f").join("RECOVERYXLOG");
        let out = site
            .run(&["fetch", &name, dest.to_str().unwrap()])
            .code(200)
            .one_line_error();
        assert!(
            out.stderr.contains("checksum") || out.stderr.contains("decompress"),
            "{}",
            out.stderr
        );
        assert!(
            !dest.exists(),
            "a corrupt segment must never reach PostgreSQL"
        );
    }
}

#[test]
fn fetch_with_the_store_unreachable_stops_recovery_within_its_bound() {
    let mut server = S3Server::start();
    let site = Site::with_settings(
        Store::S3(S3Server::start()),
        &[("OPS_STORE_TIMEOUT", "2"), ("OPS_STORE_RETRIES", "1")],
    );
    let (name, _) = archived_segment(&site);
    // Point at a server that is then stopped: connections are refused.
    let endpoint = server.endpoint();
    server.stop();
    let dest = site.tmp.subdir("f").join("RECOVERYXLOG");
    let started = Instant::now();
    let out = site
        .tool()
        .env("AWS_ENDPOINT", &endpoint)
        .args(["fetch", &name, dest.to_str().unwrap()])
        .run();
    let out = out.code(200).stderr_has("stops recovery");
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("wal-archive: error:"))
            .count(),
        1,
        "{}",
        out.stderr
    );
    assert!(
        out.elapsed < Duration::from_secs(15),
        "took {:?}",
        out.elapsed
    );
    assert!(!dest.exists());
    // And a server that accepts connections but never answers: bounded the same way.
    let proxy = FaultProxy::start(1, Fault::Blackhole);
    let started_blackhole = Instant::now();
    site.tool()
        .env("AWS_ENDPOINT", proxy.endpoint())
        .args(["fetch", &name, dest.to_str().unwrap()])
        .run()
        .code(200);
    assert!(started_blackhole.elapsed() < Duration::from_secs(15));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn push_never_hangs_and_fails_below_126() {
    let site = Site::with_settings(
        Store::S3(S3Server::start()),
        &[("WAL_ARCHIVE_TIMEOUT", "3")],
    );
    let (name, content) = archived_segment(&site);
    let staged = stage(&site, &format!("{name}.partial"), &content);
    let proxy = FaultProxy::start(1, Fault::Blackhole);
    let out = site
        .tool()
        .env("AWS_ENDPOINT", proxy.endpoint())
        .args(["push", staged.to_str().unwrap()])
        .run();
    let out = out
        .code(7)
        .one_line_error()
        .stderr_has("WAL_ARCHIVE_TIMEOUT");
    assert!(
        out.elapsed < Duration::from_secs(8),
        "took {:?}",
        out.elapsed
    );
}
