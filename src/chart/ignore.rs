//! `.helmignore`, as Helm reads it (its `pkg/ignore` documentation): one glob per line (Go's
//! `path/filepath.Match`: `*`, `?`, `[…]` classes, `\` escapes; `**` is refused); a rule
//! without a `/` tests a file's base name, one with a `/` (a leading one dropped) its whole
//! path from the chart's top; a trailing `/` matches directories only; a leading `!` negates.
//! Rules are tried in order, as Helm's code tries them: a rule that matches ignores the path;
//! a negated rule ignores every path it does *not* match, and lets one it matches go on to
//! the next rules. (Helm's documentation shows negations first then `*` as a way to keep a
//! few files; its code, which this follows, ignores those too.) This is not `.gitignore`,
//! where the last match wins, which is why berth does not use a gitignore matcher here: a
//! chart must package the same files under berth and Helm.

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    glob: String,
    negate: bool,
    dir_only: bool,
    /// Matched against the whole relative path (the rule has a `/`), else the base name.
    whole_path: bool,
}

/// A `.helmignore` line Helm refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {text:?}: {why}")]
pub struct BadRule {
    pub line: usize,
    pub text: String,
    pub why: &'static str,
}

/// The rules of one `.helmignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Parses `.helmignore` text; a rule Helm refuses (`**`, a malformed class) is an
    /// error naming its line.
    pub fn parse(text: &str) -> Result<Rules, BadRule> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why| BadRule {
                line: n + 1,
                text: line.to_string(),
                why,
            };
            if line.contains("**") {
                return Err(bad("the double-star (**) syntax is not supported"));
            }
            let (negate, rest) = match line.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, line),
            };
            let (dir_only, rest) = match rest.strip_suffix('/') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let whole_path = rest.contains('/');
            let glob = rest.trim_start_matches('/').to_string();
            if glob_match(&glob, "abc").is_none() {
                return Err(bad("not a valid pattern"));
            }
            rules.push(Rule {
                glob,
                negate,
                dir_only,
                whole_path,
            });
        }
        Ok(Rules(rules))
    }

    /// Whether `path` (relative to the chart, `/`-separated, no trailing `/`) is ignored;
    /// `is_dir` tells a directory.
    pub fn ignores(&self, path: &str, is_dir: bool) -> bool {
        if path.is_empty() || path == "." {
            return false;
        }
        let base = path.rsplit('/').next().unwrap_or(path);
        for r in &self.0 {
            let subject = if r.whole_path { path } else { base };
            let matched = glob_match(&r.glob, subject).unwrap_or(false);
            if r.negate {
                if (r.dir_only && !is_dir) || !matched {
                    return true;
                }
                continue;
            }
            if r.dir_only && !is_dir {
                continue;
            }
            if matched {
                return true;
            }
        }
        false
    }
}

/// Go's `path/filepath.Match` on `/`-separated names: whether `name` matches `pattern`
/// whole; `None` for a malformed pattern (an unclosed class, a trailing `\`).
fn glob_match(pattern: &str, name: &str) -> Option<bool> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Backtracking over the last `*` (it never crosses a separator).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    let mut ok = true;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') if n[ni] != '/' => {
                pi += 1;
                ni += 1;
                continue;
            }
            Some('[') if n[ni] != '/' => {
                let (hit, next) = class(&p, pi + 1, n[ni])?;
                if hit {
                    pi = next;
                    ni += 1;
                    continue;
                }
            }
            Some('\\') => {
                let c = *p.get(pi + 1)?;
                if c == n[ni] {
                    pi += 2;
                    ni += 1;
                    continue;
                }
            }
            Some(&c) if !matches!(c, '?' | '[' | '\\') && c == n[ni] => {
                pi += 1;
                ni += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) if n[sn] != '/' => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            _ => {
                ok = false;
                break;
            }
        }
    }
    // What is left of the pattern must be stars only (and well formed).
    let rest = &p[pi.min(p.len())..];
    if !ok {
        check_pattern(&p)?;
        return Some(false);
    }
    check_pattern(&p)?;
    Some(rest.iter().all(|c| *c == '*'))
}

/// A character class starting after its `[` at `i`: whether `c` is in it, and the index
/// after its `]`; `None` when it is malformed.
fn class(p: &[char], mut i: usize, c: char) -> Option<(bool, usize)> {
    let negated = matches!(p.get(i), Some('^'));
    if negated {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((hit != negated, i + 1));
        }
        first = false;
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|x| *x != ']') {
            hi = p[i + 1];
            if hi == '\\' {
                hi = *p.get(i + 2)?;
                i += 1;
            }
            i += 2;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
    }
}

/// Whether every class and escape of `p` is well formed.
fn check_pattern(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '[' => i = class(p, i + 1, '\0')?.1,
            '\\' => {
                p.get(i + 1)?;
                i += 2;
            }
            _ => i += 1,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_gos_filepath_match() {
        for (pattern, name, want) in [
            ("*.txt", "a.txt", true),
            ("*.txt", "dir/a.txt", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("a[b-d].txt", "ac.txt", true),
            ("a[b-d].txt", "ae.txt", false),
            ("a[^b-d].txt", "ae.txt", true),
            ("*/*.yaml", "templates/x.yaml", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*", "", true),
            ("", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(glob_match(pattern, name), Some(want), "{pattern} {name}");
        }
        assert_eq!(glob_match("[a", "a"), None);
        assert_eq!(glob_match("a\\", "a"), None);
    }

    #[test]
    fn rules_follow_helms_order_and_negation() {
        let r = Rules::parse("# comment\n*.bak\ndocs/\nsecret?.txt\n/top.md\nsub/x.md\n").unwrap();
        assert!(r.ignores("a.bak", false) && r.ignores("templates/a.bak", false));
        assert!(r.ignores("docs", true) && !r.ignores("docs", false));
        assert!(r.ignores("secret1.txt", false) && !r.ignores("secret12.txt", false));
        assert!(r.ignores("top.md", false) && !r.ignores("sub/top.md", false));
        assert!(r.ignores("sub/x.md", false) && !r.ignores("other/sub/x.md", false));
        assert!(!r.ignores("templates/bundle.yaml", false));
        // A negation ignores what it does not match; what it matches goes on.
        let only_yaml = Rules::parse("!*.yaml\n").unwrap();
        assert!(!only_yaml.ignores("values.yaml", false));
        assert!(only_yaml.ignores("README.md", false));
        let then_star = Rules::parse("!Chart.yaml\n*\n").unwrap();
        assert!(then_star.ignores("values.yaml", false));
        assert!(
            then_star.ignores("Chart.yaml", false),
            "as Helm's code: `*` still matches"
        );
        let gitignore_style = Rules::parse("*.md\n!README.md\n").unwrap();
        assert!(
            gitignore_style.ignores("README.md", false),
            "as Helm: *.md decides first"
        );
        assert!(
            gitignore_style.ignores("values.yaml", false),
            "and !README.md ignores the rest"
        );
        assert!(
            Rules::parse("templates/**/x")
                .unwrap_err()
                .why
                .contains("**")
        );
        let e = Rules::parse("a[b").unwrap_err();
        assert_eq!(e.to_string(), "line 1: \"a[b\": not a valid pattern");
    }
}
