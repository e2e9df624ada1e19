//! Prompt templates (SPEC §4): minijinja templates embedded from the repository's `prompts/`,
//! overridable per workspace by `prompts/<name>.md.j2`. Rendering is deterministic: the same
//! template and context give the same bytes.

use std::path::Path;

use anyhow::Result;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::exit::Refusal;
use crate::hash::sha256_hex;

/// The embedded templates: (name, source).
pub const BUILTIN: &[(&str, &str)] = &[
    ("audit", include_str!("../../prompts/audit.md.j2")),
    ("decisions", include_str!("../../prompts/decisions.md.j2")),
    ("plan", include_str!("../../prompts/plan.md.j2")),
    ("implement", include_str!("../../prompts/implement.md.j2")),
    ("fix", include_str!("../../prompts/fix.md.j2")),
    ("review", include_str!("../../prompts/review.md.j2")),
    (
        "final-verify",
        include_str!("../../prompts/final-verify.md.j2"),
    ),
    ("phase-1", include_str!("../../prompts/phase-1.md.j2")),
    ("phase-2", include_str!("../../prompts/phase-2.md.j2")),
    ("phase-3", include_str!("../../prompts/phase-3.md.j2")),
    ("phase-4", include_str!("../../prompts/phase-4.md.j2")),
    ("phase-5", include_str!("../../prompts/phase-5.md.j2")),
];

/// A template's source and where it came from.
#[derive(Clone, Debug)]
pub struct Template {
    /// The name.
    pub name: String,
    /// The source text.
    pub source: String,
    /// `built-in` or the workspace path of the override.
    pub origin: String,
}

impl Template {
    /// sha256 of the source (part of the step's inputs).
    #[must_use]
    pub fn sha256(&self) -> String {
        sha256_hex(self.source.as_bytes())
    }
}

/// Finds a template: the workspace override first, then the built-in.
///
/// # Errors
/// A usage refusal when neither exists or the override cannot be read.
pub fn find(root: &Path, name: &str) -> Result<Template, Refusal> {
    let rel = format!("prompts/{name}.md.j2");
    let path = root.join(&rel);
    match std::fs::read_to_string(&path) {
        Ok(source) => {
            return Ok(Template {
                name: name.to_owned(),
                source,
                origin: rel,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(
                Refusal::usage(format!("cannot read the template override `{rel}` ({e})"))
                    .hint("fix its permissions or remove it to use the built-in template"),
            );
        }
    }
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, s)| Template {
            name: (*n).to_owned(),
            source: (*s).to_owned(),
            origin: "built-in".to_owned(),
        })
        .ok_or_else(|| {
            Refusal::usage(format!(
                "no template `{name}`: neither `{rel}` nor a built-in one exists"
            ))
            .hint(format!(
                "create `{rel}` or use one of: {}",
                BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Renders a template with a context.
///
/// # Errors
/// A usage refusal naming the template and the error (syntax, undefined variable).
pub fn render<C: Serialize>(template: &Template, context: &C) -> Result<String, Refusal> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let fail = |e: minijinja::Error| {
        Refusal::usage(format!(
            "the prompt template `{}` ({}) does not render: {e}",
            template.name, template.origin
        ))
        .hint("fix the template; `gatekeeper init` does not overwrite it")
    };
    env.add_template(&template.name, &template.source)
        .map_err(fail)?;
    let mut out = env
        .get_template(&template.name)
        .map_err(fail)?
        .render(minijinja::value::Serde(context))
        .map_err(fail)?;
    // minijinja drops the final newline of a template; a prompt ends with one.
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        for (name, source) in BUILTIN {
            let mut env = Environment::new();
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn strict_undefined_is_an_error() {
        let t = Template {
            name: "x".into(),
            source: "{{ nope }}".into(),
            origin: "test".into(),
        };
        assert!(render(&t, &serde_json::json!({})).is_err());
    }
}
