//! Documentation generated from the code, kept in the Markdown files by the tests.

use std::path::Path;

/// Checks that `doc` holds `content` between `<!-- generated:NAME -->` and `<!-- end:NAME -->`.
/// With `OPS_BLESS=1` in the environment, rewrites the block instead.
///
/// # Panics
/// When the block is missing or differs (without `OPS_BLESS`).
pub fn check_generated(doc: &Path, name: &str, content: &str) {
    // Tests in one binary run on threads; blessing two blocks of one file must not race.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let text = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let begin = format!("<!-- generated:{name} -->\n");
    let end = format!("<!-- end:{name} -->");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("{} has no {begin:?} marker", doc.display()))
        + begin.len();
    let stop = start
        + text[start..]
            .find(&end)
            .unwrap_or_else(|| panic!("{} has no {end:?} marker", doc.display()));
    if text[start..stop] == *content {
        return;
    }
    if std::env::var_os("OPS_BLESS").is_some() {
        let updated = format!("{}{content}{}", &text[..start], &text[stop..]);
        std::fs::write(doc, updated).expect("rewriting the document");
        return;
    }
    panic!(
        "{} is out of date in its {name} block; run the tests with OPS_BLESS=1 to regenerate it.\n--- expected\n{content}",
        doc.display()
    );
}
