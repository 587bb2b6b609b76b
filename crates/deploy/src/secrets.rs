//! Secret values: the strings that came from a vault, and how they are kept out of what is shown.
//!
//! Every scalar read from a vault file (or an inline `!vault` value) is a secret. Variables that
//! take their value from one (`db_password: "{{ vault_db_password }}"`) and the files rendered
//! from them hold the same string, so masking works on text: every occurrence of every secret in
//! a diff, a message or a command's output is replaced by [`MASK`] before it is shown. A secret
//! transformed on its way into a file (`{{ x | b64encode }}`) is not recognised; the docs say so.
//!
//! Values shorter than [`MIN_MASKED`] characters are not masked (masking every `1` in a diff would
//! make it unreadable, and such a value is no secret); loading one logs a warning.

use std::collections::BTreeSet;

/// What a secret value is shown as.
pub const MASK: &str = "********";

/// Shorter vault values are not masked.
pub const MIN_MASKED: usize = 4;

/// The secret values of a run, longest first (so a secret containing another is masked whole).
#[derive(Debug, Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    /// A masker for these values; short and empty ones are dropped.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let set: BTreeSet<String> = values
            .into_iter()
            .filter(|v| v.chars().count() >= MIN_MASKED)
            .collect();
        let mut secrets: Vec<String> = set.into_iter().collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Self { secrets }
    }

    /// The secret values (for the compiled plan, so a remote host masks its own output).
    pub fn values(&self) -> &[String] {
        &self.secrets
    }

    /// True when the text contains a secret.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(s.as_str()))
    }

    /// The text with every secret replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// A masker holding the secrets of both.
    #[must_use]
    pub fn merged(&self, other: &Masker) -> Masker {
        Masker::new(self.secrets.iter().chain(&other.secrets).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first_and_skips_short_values() {
        let m = Masker::new([
            "hunter2".to_owned(),
            "hunter22".to_owned(),
            "abc".to_owned(),
        ]);
        assert_eq!(
            m.mask("pw=hunter22 and hunter2, abc"),
            "pw=******** and ********, abc"
        );
        assert!(m.contains_secret("xx hunter2"));
        assert!(!m.contains_secret("abc"));
        assert_eq!(m.values(), ["hunter22", "hunter2"]);
        let both = m.merged(&Masker::new(["s3cr3t-x".to_owned()]));
        assert_eq!(both.mask("s3cr3t-x"), MASK);
    }
}
