//! The swap: a reader querying while a run swaps the new copy in sees the old copy or the new one,
//! never a mix of both, and never an error.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::Site;

/// The numbers a reader sees in one statement: three tables that all change between runs.
const STATE: &str = "SELECT (SELECT count(*) FROM stats.info_requests), \
                            (SELECT count(*) FROM stats.info_request_events), \
                            (SELECT count(*) FROM stats.users)";

type State = (i64, i64, i64);

fn state(row: &postgres::Row) -> State {
    (row.get(0), row.get(1), row.get(2))
}

/// Adds public requests with their events, and users, so every counted table grows.
fn grow(site: &Site, n: i32) {
    site.source()
        .batch_execute(&format!(
            "INSERT INTO users (email, name, hashed_password, created_at, updated_at, url_name) \
               SELECT 'new' || g || '@mail.example.net', 'New Person', 'x', now(), now(), 'new_person_' || g \
               FROM generate_series(1, {n}) g; \
             WITH r AS (INSERT INTO info_requests (title, user_id, public_body_id, created_at, updated_at, \
                          described_state, prominence, url_title, idhash) \
                        SELECT 'Added ' || g, 1, 1, now(), now(), 'waiting_response', 'normal', 'added_' || g || '_' || random(), 'x' \
                        FROM generate_series(1, {n}) g RETURNING id) \
             INSERT INTO info_request_events (info_request_id, event_type, created_at) SELECT id, 'sent', now() FROM r"
        ))
        .unwrap();
}

#[test]
fn readers_during_the_swap_see_one_copy_or_the_other() {
    let site = Arc::new(Site::new(400));
    site.run(&["-q", "run"]).success();
    let old = state(&site.reader().query_one(STATE, &[]).unwrap());
    grow(&site, 25);

    let stop = Arc::new(AtomicBool::new(false));
    // A fast reader, one statement after the other.
    let fast = {
        let (site, stop) = (site.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reader = site.reader();
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let row = reader
                    .query_one(STATE, &[])
                    .expect("the fast reader failed");
                seen.push(state(&row));
            }
            seen
        })
    };
    // A slow reader whose statements hold the live tables for longer than one swap attempt waits,
    // so the swap has to try again.
    let slow = {
        let (site, stop) = (site.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reader = site.reader();
            let slow = STATE.replace(
                "SELECT (SELECT",
                "SELECT (SELECT count(*) FROM pg_sleep(2.5)), (SELECT",
            );
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let row = reader
                    .query_one(slow.as_str(), &[])
                    .expect("the slow reader failed");
                seen.push((row.get(1), row.get(2), row.get(3)));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let out = site.run(&["run", "--log-format", "json"]).success();
    let swap_took = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let fast: Vec<State> = fast.join().unwrap();
    let slow: Vec<State> = slow.join().unwrap();
    let new = state(&site.reader().query_one(STATE, &[]).unwrap());
    assert_ne!(old, new);
    assert_eq!((new.0 - old.0, new.1 - old.1, new.2 - old.2), (25, 25, 25));

    for (name, seen) in [("fast", &fast), ("slow", &slow)] {
        let distinct: BTreeSet<State> = seen.iter().copied().collect();
        assert!(
            distinct.iter().all(|s| *s == old || *s == new),
            "the {name} reader saw a mix: {distinct:?} (old {old:?}, new {new:?})"
        );
        // Old, then new: never back.
        let first_new = seen.iter().position(|s| *s == new).unwrap_or(seen.len());
        assert!(
            seen[first_new..].iter().all(|s| *s == new),
            "{name}: {seen:?}"
        );
        assert!(
            seen.contains(&new),
            "the {name} reader never saw the new copy"
        );
    }
    assert!(
        fast.contains(&old),
        "the fast reader never saw the old copy"
    );
    assert!(
        fast.len() > 20,
        "the fast reader ran {} statements",
        fast.len()
    );
    // The slow reader held the tables past one attempt's lock timeout: the swap waited, retried,
    // and got through between two of its statements.
    assert!(
        out.stderr.contains("trying the swap again"),
        "the swap never had to wait ({swap_took:?}): {}",
        out.stderr
    );
}
