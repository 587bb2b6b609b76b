//! PostgreSQL helpers: connecting, quoting, and error messages that never quote row data.

use tokio_postgres::error::SqlState;

use crate::error::{Error, Result};

/// Classes of SQLSTATE whose messages name objects and settings but never quote values from rows
/// (<https://www.postgresql.org/docs/15/errcodes-appendix.html>): connection, feature, transaction
/// state, authorization, catalog, syntax and access rules, resources, operator intervention,
/// system errors. The messages of every other class (data exceptions `22`, integrity violations
/// `23`, errors raised by functions `P0`, …) may contain a value and are reduced to their SQLSTATE.
const SAFE_CLASSES: &[&str] = &[
    "08", "0A", "0L", "0P", "25", "28", "2D", "3D", "3F", "40", "42", "53", "54", "55", "57", "58",
    "F0",
];

/// What a PostgreSQL error may be shown as: the SQLSTATE and, for the safe classes, the message;
/// never `DETAIL` (`Key (email)=(…) already exists`) nor the query.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if SAFE_CLASSES.iter().any(|class| code.starts_with(class)) {
            format!("{} (SQLSTATE {code})", db.message())
        } else {
            format!(
                "SQLSTATE {code} (message withheld as it may quote row data; the server log has it)"
            )
        }
    } else if e.is_closed() {
        "the connection was closed".to_owned()
    } else {
        // Connection and protocol errors: no row data in them. Only the first line, without the
        // chain, which tokio-postgres renders itself.
        e.to_string().lines().next().unwrap_or_default().to_owned()
    }
}

/// True for the errors a retry can get past: a lock not obtained within `lock_timeout`, a
/// deadlock, a serialization failure.
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// An identifier, always double-quoted (so reserved words and capitals are safe).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// A string literal, standard-conforming (`'it''s'`).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Connects and spawns the connection's task; `what` names the database in errors.
///
/// # Errors
/// When the connection fails.
pub async fn connect(
    config: &tokio_postgres::Config,
    what: &str,
) -> Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::db(format!("connecting to the {what} database"), &e))?;
    let what = what.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(database = %what, "connection ended: {}", describe(&e));
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(ident("order"), "\"order\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(qualified("public", "users"), "\"public\".\"users\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
