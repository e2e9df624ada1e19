//! Scope rules (SPEC §3): which changed paths a task may touch.
//!
//! Globs are repository-relative and `/`-separated; `*` stays inside one segment, `**` crosses
//! segments, a trailing `/` means "everything below", a pattern without glob characters also
//! covers everything below it (as a gitignore pattern names a folder). A leading `./` or `/` is
//! dropped; `..` is malformed. A path is in scope when it matches an allowed glob and no
//! forbidden one. Matching is pure; [`changeset`] reads git.

pub mod changeset;

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::Serialize;

/// A malformed glob, named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed glob `{glob}`: {reason}")]
pub struct GlobError {
    /// The glob as written.
    pub glob: String,
    /// What is wrong.
    pub reason: String,
}

/// One compiled pattern.
#[derive(Clone, Debug)]
struct Pattern {
    shown: String,
    matchers: Vec<GlobMatcher>,
}

impl Pattern {
    fn new(raw: &str) -> Result<Pattern, GlobError> {
        let fail = |reason: &str| GlobError {
            glob: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let mut p = raw.trim();
        while let Some(rest) = p.strip_prefix("./") {
            p = rest;
        }
        let p = p.trim_start_matches('/');
        if p.is_empty() {
            return Err(fail("it is empty"));
        }
        if p.contains('\\') {
            return Err(fail("use `/` as the separator"));
        }
        if p.split('/').any(|seg| seg == "..") {
            return Err(fail(
                "`..` is not allowed: globs are relative to the repository root",
            ));
        }
        let mut sources = Vec::new();
        if let Some(dir) = p.strip_suffix('/') {
            sources.push(format!("{}/**", dir.trim_end_matches('/')));
        } else {
            sources.push(p.to_owned());
            if !p.contains(['*', '?', '[', '{']) {
                sources.push(format!("{p}/**"));
            }
        }
        let matchers = sources
            .iter()
            .map(|s| {
                build(s)
                    .map(|g| g.compile_matcher())
                    .map_err(|e| fail(&e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pattern {
            shown: raw.trim().to_owned(),
            matchers,
        })
    }

    fn is_match(&self, path: &str) -> bool {
        self.matchers.iter().any(|m| m.is_match(path))
    }
}

fn build(source: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(source)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// The verdict on one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "glob")]
pub enum PathVerdict {
    /// Matched this allowed glob and no forbidden one.
    Allowed(String),
    /// Matched this forbidden glob.
    Forbidden(String),
    /// Matched no allowed glob.
    OutOfScope,
}

impl PathVerdict {
    /// True when the path is in scope.
    #[must_use]
    pub fn in_scope(&self) -> bool {
        matches!(self, PathVerdict::Allowed(_))
    }
}

/// Compiled allowed and forbidden globs.
#[derive(Clone, Debug, Default)]
pub struct ScopeRules {
    allowed: Vec<Pattern>,
    forbidden: Vec<Pattern>,
}

impl ScopeRules {
    /// Compiles the rules.
    ///
    /// # Errors
    /// The first malformed glob.
    pub fn new<A, F>(allowed: A, forbidden: F) -> Result<ScopeRules, GlobError>
    where
        A: IntoIterator,
        A::Item: AsRef<str>,
        F: IntoIterator,
        F::Item: AsRef<str>,
    {
        Ok(ScopeRules {
            allowed: allowed
                .into_iter()
                .map(|g| Pattern::new(g.as_ref()))
                .collect::<Result<_, _>>()?,
            forbidden: forbidden
                .into_iter()
                .map(|g| Pattern::new(g.as_ref()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The verdict on a repository-relative path.
    #[must_use]
    pub fn check(&self, path: &str) -> PathVerdict {
        if let Some(f) = self.forbidden.iter().find(|p| p.is_match(path)) {
            return PathVerdict::Forbidden(f.shown.clone());
        }
        match self.allowed.iter().find(|p| p.is_match(path)) {
            Some(a) => PathVerdict::Allowed(a.shown.clone()),
            None => PathVerdict::OutOfScope,
        }
    }

    /// True when no allowed glob is present.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }
}

/// Validates one glob on its own.
///
/// # Errors
/// When the glob is malformed.
pub fn validate_glob(glob: &str) -> Result<(), GlobError> {
    Pattern::new(glob).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(allowed: &[&str], forbidden: &[&str], path: &str, expected: &str) {
        let rules = ScopeRules::new(allowed, forbidden).unwrap();
        let got = match rules.check(path) {
            PathVerdict::Allowed(g) => format!("allowed {g}"),
            PathVerdict::Forbidden(g) => format!("forbidden {g}"),
            PathVerdict::OutOfScope => "out".to_owned(),
        };
        assert_eq!(got, expected, "{allowed:?} {forbidden:?} {path}");
    }

    #[test]
    fn glob_semantics() {
        check(&["src/*.rs"], &[], "src/a.rs", "allowed src/*.rs");
        check(&["src/*.rs"], &[], "src/x/a.rs", "out");
        check(&["src/**"], &[], "src/x/y/a.rs", "allowed src/**");
        check(&["src/"], &[], "src/x/a.rs", "allowed src/");
        check(&["src"], &[], "src/x/a.rs", "allowed src");
        check(&["src"], &[], "srcx/a.rs", "out");
        check(&["./README.md"], &[], "README.md", "allowed ./README.md");
        check(&["/README.md"], &[], "README.md", "allowed /README.md");
        check(&["**/*.md"], &[], "a/b/c.md", "allowed **/*.md");
        check(
            &["src/**"],
            &["src/secret/**"],
            "src/secret/k",
            "forbidden src/secret/**",
        );
        check(&["*"], &[], "a/b", "out");
        check(&[], &[], "a", "out");
    }

    #[test]
    fn malformed_globs() {
        for bad in ["../x", "a/../b", "", "./", "a\\b", "src/[", "/"] {
            assert!(validate_glob(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn star_never_crosses_a_separator(dir in "[a-z]{1,8}", a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
            let rules = ScopeRules::new([format!("{dir}/*")], Vec::<String>::new()).unwrap();
            let inside = format!("{dir}/{a}");
            let deeper = format!("{dir}/{a}/{b}");
            proptest::prop_assert!(rules.check(&inside).in_scope());
            proptest::prop_assert!(!rules.check(&deeper).in_scope());
        }

        #[test]
        fn forbidden_wins(path in "[a-z]{1,6}(/[a-z]{1,6}){0,3}") {
            let rules = ScopeRules::new(["**"], ["**"]).unwrap();
            proptest::prop_assert!(!rules.check(&path).in_scope());
        }

        #[test]
        fn literal_paths_match_themselves_and_below(path in "[a-z]{1,6}(/[a-z]{1,6}){0,3}", below in "[a-z]{1,6}") {
            let rules = ScopeRules::new([path.clone()], Vec::<String>::new()).unwrap();
            proptest::prop_assert!(rules.check(&path).in_scope());
            let child = format!("{path}/{below}");
            proptest::prop_assert!(rules.check(&child).in_scope());
            let sibling = format!("{path}x");
            proptest::prop_assert!(!rules.check(&sibling).in_scope());
        }

        #[test]
        fn arbitrary_globs_never_panic(g in "(?s).{0,40}", p in ".{0,40}") {
            if let Ok(rules) = ScopeRules::new([g], Vec::<String>::new()) {
                let _ = rules.check(&p);
            }
        }
    }
}
