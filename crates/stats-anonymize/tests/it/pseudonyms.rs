//! The HMAC computed by PostgreSQL's `sha256()` is HMAC-SHA256: RFC 4231's vectors, pgcrypto's
//! `hmac()` and the `hmac` crate agree with it.

use ops_testkit::{PgCluster, PgOptions};
use stats_anonymize::pseudonym::{self, PaddedKeys};

/// The pseudonym of `value` under `key`, computed by the server as a run computes it.
fn server_hmac(client: &mut postgres::Client, key: &[u8], value: &str) -> String {
    let keys = PaddedKeys::new(key);
    client
        .query(pseudonym::SET_KEYS, &[&keys.ipad, &keys.opad])
        .unwrap();
    client
        .query_one(&format!("SELECT {}", pseudonym::sql("$1::text")), &[&value])
        .unwrap()
        .get(0)
}

#[test]
fn the_server_side_hmac_is_hmac_sha256() {
    let pg = PgCluster::start(&PgOptions::default());
    let mut client = pg.connect("postgres");
    // RFC 4231 test cases 1, 2, 6 and 7 (those whose data is text).
    let long_key = [0xaa_u8; 131];
    for (key, data, expected) in [
        (
            &[0x0b_u8; 20][..],
            "Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe",
            "what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            &long_key[..],
            "Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            &long_key[..],
            "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ] {
        assert_eq!(server_hmac(&mut client, key, data), expected, "{data}");
    }

    // pgcrypto's hmac() and the hmac crate, on values like those hashed in a run.
    client.batch_execute("CREATE EXTENSION pgcrypto").unwrap();
    let key = crate::support::KEY.as_bytes();
    for value in [
        "1",
        "42",
        "10.1.2.3/32",
        "zoë.o'brien@example.org",
        "",
        "a much longer value than a block of sixty-four bytes, to be sure",
    ] {
        let ours = server_hmac(&mut client, key, value);
        let pgcrypto: String = client
            .query_one(
                "SELECT encode(hmac(convert_to($1::text, 'UTF8'), $2::bytea, 'sha256'), 'hex')",
                &[&value, &key],
            )
            .unwrap()
            .get(0);
        assert_eq!(ours, pgcrypto, "{value}");
        assert_eq!(ours, crate::support::pseudonym(value), "{value}");
    }
    // NULL stays NULL.
    let null: Option<String> = client
        .query_one(&format!("SELECT {}", pseudonym::sql("NULL::text")), &[])
        .unwrap()
        .get(0);
    assert_eq!(null, None);
}
