//! Jinja2 templates through minijinja, set up the way ansible sets up Jinja2.
//!
//! - Undefined variables are errors (minijinja's strict mode), and the error names them.
//! - `trim_blocks` is on and the final newline of a template is kept, as in ansible's `template`.
//! - A string that is exactly one `{{ expression }}` keeps the type of its value (a list, a
//!   number, a boolean), as ansible does, so `ports: "{{ base_ports }}"` is a list, not its text.
//! - Ansible filters the site's templates use are added: `bool`, `quote`, `b64encode`,
//!   `b64decode`, `basename`, `dirname`, `to_json` (minijinja has `default`, `join`, `lower`,
//!   `replace`, `indent`, `tojson`, … of its own).
//! - Templates named in the plan (`template: nginx/site.conf.j2`) and `{% include %}`d ones are
//!   read from the `templates/` directory; a name cannot leave it.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

/// The directory of templates in the configuration directory.
pub const TEMPLATES_DIR: &str = "templates";

/// The template environment of one configuration directory.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

/// True when a string holds template syntax and must be rendered.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// The expression of a string that is exactly one `{{ expression }}`.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if ["{{", "}}", "{%", "%}", "{#"]
        .iter()
        .any(|m| inner.contains(m))
    {
        return None;
    }
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    Some(inner)
}

/// A relative path inside a directory, refusing `..`, absolute paths and empty names.
pub fn contained(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    let ok = !name.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| dir.join(rel))
}

impl Templates {
    /// The environment for a configuration directory.
    ///
    /// # Panics
    /// Never: the syntax it sets is minijinja's default one with trimming options.
    pub fn new(config_root: &Path) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid");
        env.set_syntax(syntax);
        let dir = config_root.join(TEMPLATES_DIR);
        env.set_loader(move |name| {
            let Some(path) = contained(&dir, name) else {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("template name {name:?} must be a relative path inside templates/"),
                ));
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{}: {e}", path.display()),
                )),
            }
        });
        env.add_filter("bool", to_bool);
        env.add_filter("quote", shell_quote_filter);
        env.add_filter("b64encode", |s: String| {
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        });
        env.add_filter("b64decode", b64decode);
        env.add_filter("basename", |s: String| {
            Path::new(&s)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        env.add_filter("dirname", |s: String| {
            Path::new(&s)
                .parent()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        env.add_filter("to_json", minijinja::filters::tojson);
        Self { env }
    }

    /// The top-level variables a template string refers to.
    ///
    /// # Errors
    /// A syntax error, as one line.
    pub fn references(&self, name: &str, source: &str) -> Result<HashSet<String>, String> {
        if let Some(expr) = single_expression(source) {
            let e = self
                .env
                .compile_expression(expr)
                .map_err(|e| describe(&e))?;
            return Ok(e.undeclared_variables(false));
        }
        let t = self
            .env
            .template_from_named_str(name, source)
            .map_err(|e| describe(&e))?;
        Ok(t.undeclared_variables(false))
    }

    /// Renders a string: its value if it is exactly one expression, else its text.
    ///
    /// # Errors
    /// Syntax errors and undefined variables (named), as one line.
    pub fn render_value(&self, name: &str, source: &str, ctx: &Value) -> Result<Value, String> {
        if let Some(expr) = single_expression(source) {
            let compiled = self
                .env
                .compile_expression(expr)
                .map_err(|e| describe(&e))?;
            let value = compiled
                .eval(ctx)
                .map_err(|e| self.explain(&e, source, ctx))?;
            if value.is_undefined() {
                return Err(undefined_message(
                    &compiled.undeclared_variables(false),
                    ctx,
                ));
            }
            return Ok(value);
        }
        self.render_text(name, source, ctx).map(Value::from)
    }

    /// Renders a string to text.
    ///
    /// # Errors
    /// See [`Templates::render_value`].
    pub fn render_text(&self, name: &str, source: &str, ctx: &Value) -> Result<String, String> {
        let t = self
            .env
            .template_from_named_str(name, source)
            .map_err(|e| describe(&e))?;
        t.render(ctx).map_err(|e| self.explain(&e, source, ctx))
    }

    /// Renders a template file of `templates/`.
    ///
    /// # Errors
    /// A missing template, syntax errors, undefined variables.
    pub fn render_file(&self, name: &str, ctx: &Value) -> Result<String, String> {
        let t = self.env.get_template(name).map_err(|e| {
            if e.kind() == ErrorKind::TemplateNotFound {
                format!("template {name}: no such file in {TEMPLATES_DIR}/")
            } else {
                describe(&e)
            }
        })?;
        let source = t.source().to_owned();
        t.render(ctx).map_err(|e| self.explain(&e, &source, ctx))
    }

    /// Evaluates a `when:` expression to true or false (Jinja2's truthiness).
    ///
    /// # Errors
    /// A syntax error or an undefined variable.
    pub fn eval_bool(&self, expr: &str, ctx: &Value) -> Result<bool, String> {
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| describe(&e))?;
        let value = compiled.eval(ctx).map_err(|e| describe(&e))?;
        if value.is_undefined() {
            return Err(undefined_message(
                &compiled.undeclared_variables(false),
                ctx,
            ));
        }
        Ok(value.is_true())
    }

    /// An error message that names the undefined variables when that is what went wrong.
    fn explain(&self, e: &minijinja::Error, source: &str, ctx: &Value) -> String {
        if e.kind() == ErrorKind::UndefinedError {
            let names = self.references("<undefined>", source).unwrap_or_default();
            let missing = missing_names(&names, ctx);
            if !missing.is_empty() {
                return format!(
                    "{} (undefined variable{} {})",
                    describe(e),
                    if missing.len() > 1 { "s" } else { "" },
                    missing.join(", ")
                );
            }
        }
        describe(e)
    }
}

fn missing_names(names: &HashSet<String>, ctx: &Value) -> Vec<String> {
    let mut missing: Vec<String> = names
        .iter()
        .filter(|n| ctx.get_attr(n).map_or(true, |v| v.is_undefined()))
        .cloned()
        .collect();
    missing.sort();
    missing
}

fn undefined_message(names: &HashSet<String>, ctx: &Value) -> String {
    let missing = missing_names(names, ctx);
    if missing.is_empty() {
        "the expression is undefined".to_owned()
    } else {
        format!("undefined variable {}", missing.join(", "))
    }
}

/// A minijinja error on one line, with its position.
pub fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// ansible's `bool` filter: `yes`, `on`, `true`, `1` (any case) and true values are true.
fn to_bool(value: &Value) -> bool {
    if let Some(s) = value.as_str() {
        return matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "yes" | "on" | "true" | "1" | "y"
        );
    }
    if let Ok(n) = i64::try_from(value.clone()) {
        return n == 1;
    }
    value.is_true()
}

fn shell_quote_filter(s: &str) -> String {
    shell_quote(s)
}

/// Quotes a string for a POSIX shell: unchanged when it only has safe characters, else in single
/// quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn b64decode(s: &str) -> Result<String, minijinja::Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim().as_bytes())
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "decodes to bytes that are not UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Value {
        Value::from(minijinja::value::Serde(serde_json::json!({
            "name": "foi", "ports": [80, 443], "yes_text": "yes", "n": 60
        })))
    }

    #[test]
    fn a_lone_expression_keeps_its_type_and_text_renders_to_text() {
        let t = Templates::new(Path::new("/nonexistent"));
        let v = t.render_value("x", "{{ ports }}", &ctx()).unwrap();
        assert_eq!(v.len(), Some(2));
        let v = t.render_value("x", "{{ n }}", &ctx()).unwrap();
        assert_eq!(i64::try_from(v).unwrap(), 60);
        let v = t.render_value("x", "{{ name }}-{{ n }}", &ctx()).unwrap();
        assert_eq!(v.as_str(), Some("foi-60"));
        assert_eq!(
            t.render_value("x", "{{ yes_text | bool }}", &ctx())
                .unwrap(),
            Value::from(true)
        );
        assert_eq!(
            t.render_text("x", "{{ 'a b' | quote }} {{ 'x/y.z' | basename }}", &ctx())
                .unwrap(),
            "'a b' y.z"
        );
        assert_eq!(
            t.render_text("x", "{{ 'hi' | b64encode | b64decode }}\n", &ctx())
                .unwrap(),
            "hi\n",
            "the final newline is kept"
        );
    }

    #[test]
    fn undefined_variables_are_errors_that_name_them() {
        let t = Templates::new(Path::new("/nonexistent"));
        let e = t.render_value("x", "{{ missing }}", &ctx()).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        let e = t
            .render_text("x", "a {{ name }} {{ nope }} b", &ctx())
            .unwrap_err();
        assert!(e.contains("undefined variable nope"), "{e}");
        assert_eq!(
            t.render_text("x", "{{ nope | default('d') }}", &ctx())
                .unwrap(),
            "d"
        );
        assert!(t.eval_bool("name == 'foi'", &ctx()).unwrap());
        assert!(!t.eval_bool("nope is defined", &ctx()).unwrap());
        assert!(t.eval_bool("nope ==", &ctx()).is_err());
        let refs = t
            .references("x", "{{ a }} {% if b %}{{ c.d }}{% endif %}")
            .unwrap();
        let mut refs: Vec<_> = refs.into_iter().collect();
        refs.sort();
        assert_eq!(refs, ["a", "b", "c"]);
    }

    #[test]
    fn template_files_come_from_templates_and_cannot_leave_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates/inc")).unwrap();
        std::fs::write(
            dir.path().join("templates/site.j2"),
            "{% if true %}\nserver {{ name }};\n{% endif %}\n{% include 'inc/part.j2' %}",
        )
        .unwrap();
        std::fs::write(dir.path().join("templates/inc/part.j2"), "part\n").unwrap();
        let t = Templates::new(dir.path());
        assert_eq!(
            t.render_file("site.j2", &ctx()).unwrap(),
            "server foi;\npart\n"
        );
        let e = t.render_file("nope.j2", &ctx()).unwrap_err();
        assert_eq!(e, "template nope.j2: no such file in templates/");
        assert!(t.render_file("../inventory.yml", &ctx()).is_err());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("/a/b"), "/a/b");
    }
}
