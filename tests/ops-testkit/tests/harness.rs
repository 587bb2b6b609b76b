//! The harness's own parts, started for real.

use ops_testkit::{PgCluster, PgOptions};

#[test]
fn postgres_cluster_starts_with_settings_answers_and_stops() {
    let mut pg = PgCluster::start(&PgOptions::default().setting("work_mem", "'8MB'"));
    assert_eq!(pg.psql("postgres", "show work_mem"), "8MB");
    let version: String = pg
        .connect("postgres")
        .query_one("show server_version_num", &[])
        .unwrap()
        .get(0);
    assert!(
        version.starts_with("15"),
        "PostgreSQL 15 expected, got {version}"
    );
    assert!(pg.is_running());
    pg.stop();
    assert!(!pg.is_running());
    pg.start_server();
    assert_eq!(pg.psql("postgres", "select 1"), "1");
}
