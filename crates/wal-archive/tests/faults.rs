//! Archiving under faults: pgbench writes for a minute while every request to the S3 server goes
//! through a proxy that answers 503s, resets connections and adds latency, and some pushes are
//! killed with SIGKILL half-way. Afterwards `verify` finds no gap, and a restore to the end of the
//! archive holds exactly the primary's data.

mod support;

use std::time::Duration;

use ops_testkit::{Fault, FaultProxy, S3Server, pg_bindir};
use support::{Site, Store, write_setting};

const LOAD_SECONDS: u32 = 60;

/// One checksum per pgbench table, over every row in key order.
fn table_checksums(client: &mut postgres::Client) -> Vec<(String, String)> {
    [
        ("pgbench_accounts", "aid"),
        ("pgbench_branches", "bid"),
        ("pgbench_tellers", "tid"),
        ("pgbench_history", "tid, bid, aid, delta, mtime"),
    ]
    .iter()
    .map(|(table, order)| {
        let sql = format!("select coalesce(md5(string_agg(t::text, ',' order by {order})), 'empty') from {table} t");
        (table.to_string(), client.query_one(sql.as_str(), &[]).unwrap().get(0))
    })
    .collect()
}

#[test]
fn archiving_survives_a_faulty_network_and_killed_pushes() {
    let server = S3Server::start();
    let proxy = FaultProxy::start(
        server.port(),
        Fault::Random {
            error: 0.08,
            reset: 0.08,
            max_delay: Duration::from_millis(40),
        },
    );
    let site = Site::with_settings(
        Store::S3(server),
        &[("OPS_STORE_RETRIES", "8"), ("OPS_STORE_TIMEOUT", "10")],
    );
    write_setting(&site.envdir, "AWS_ENDPOINT", &proxy.endpoint());

    // Every fourth push is killed with SIGKILL 20 to 320 ms after it starts: in its start-up, while
    // it reads or compresses, or during an upload slowed by the proxy.
    let killer = site.tmp.subdir("bin").join("sometimes-killed-push");
    let counter = site.tmp.subdir("bin").join("pushes");
    std::fs::write(&counter, "0").unwrap();
    ops_testkit::chown_postgres(&counter);
    std::fs::write(
        &killer,
        format!(
            "#!/bin/sh\n\
             n=$(cat {counter}); echo $((n + 1)) > {counter}\n\
             if [ $((n % 4)) -eq 1 ]; then\n\
               ms=$((20 + n * 37 % 300))\n\
               timeout -s KILL \"0.$(printf %03d $ms)\" {bin} --envdir {env} push \"$1\"\n\
               exit $?\n\
             fi\n\
             exec {bin} --envdir {env} push \"$1\"\n",
            counter = counter.display(),
            bin = site.bin.display(),
            env = site.envdir.display()
        ),
    )
    .unwrap();
    ops_testkit::set_mode(&killer, 0o755);
    let mut primary = site.primary.connect("postgres");
    primary
        .batch_execute(&format!(
            "alter system set archive_command = '{} %p'",
            killer.display()
        ))
        .unwrap();
    primary.batch_execute("select pg_reload_conf()").unwrap();

    let pgbench = |args: &[&str]| {
        let out = std::process::Command::new(pg_bindir().join("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &site.primary.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(args)
            .arg("postgres")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pgbench {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    pgbench(&["-i", "-s", "3", "-q"]);
    site.run(&["backup"]).success();
    pgbench(&["-n", "-c", "2", "-T", &LOAD_SECONDS.to_string()]);
    site.switch_and_wait_archived(&site.primary.url("postgres"));

    let log = site.primary.log();
    assert!(
        log.contains("exit code 137"),
        "no push was killed; the test would prove less than it says"
    );

    let verify: serde_json::Value =
        serde_json::from_str(&site.run(&["verify", "--json"]).success().stdout).unwrap();
    assert_eq!(verify["problems"], serde_json::json!([]), "{verify}");

    let expected = table_checksums(&mut primary);
    let restored = site.restore_latest("after-faults");
    assert_eq!(table_checksums(&mut restored.connect()), expected);
}
