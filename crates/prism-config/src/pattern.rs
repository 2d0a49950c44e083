use std::fmt;

/// A glob over ingested stream names, written `app/key`.
///
/// `*` matches any run of characters except `/`, so `live/*` matches every
/// key published to app `live` but not app `live/sub`. The bare pattern `*`
/// is special: it matches every stream, whatever its app. Other characters
/// match literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPattern {
    text: String,
}

impl StreamPattern {
    /// Parses a pattern. It must be `*` or have a non-empty app and key
    /// separated by `/`, so that a forgotten app (`"abc"`) is an error rather
    /// than a route that silently never matches.
    pub fn new(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(StreamPattern { text: text.into() });
        }
        if !text.contains('/') {
            return Err(format!(
                "stream pattern `{text}` must be `app/key` (e.g. `live/*`) or `*`"
            ));
        }
        if text.split('/').any(str::is_empty) {
            return Err(format!("stream pattern `{text}` has an empty segment"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "stream pattern `{text}` contains whitespace or control characters"
            ));
        }
        Ok(StreamPattern { text: text.into() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, app: &str, key: &str) -> bool {
        if self.text == "*" {
            return true;
        }
        let name = format!("{app}/{key}");
        glob(self.text.as_bytes(), name.as_bytes())
    }
}

impl fmt::Display for StreamPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Iterative glob with single-star backtracking: linear-ish and no recursion,
/// so a hostile key cannot blow the stack. Working on bytes is fine because
/// `*` and `/` are ASCII and never occur inside a UTF-8 multibyte sequence.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // Position after the last '*' and the input position it is trying.
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p + 1, i));
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star {
            // Let the star swallow one more byte, unless that byte is '/'.
            if s[si] == b'/' {
                return false;
            }
            p = sp;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, app: &str, key: &str) -> bool {
        StreamPattern::new(p).unwrap().matches(app, key)
    }

    #[test]
    fn globbing() {
        assert!(m("live/*", "live", "abc"));
        assert!(m("live/*", "live", ""));
        assert!(!m("live/*", "other", "abc"));
        assert!(!m("live/*", "live/sub", "abc"));
        assert!(!m("live/*", "livex", "abc"));
        assert!(m("*/*", "any", "thing"));
        assert!(!m("*/*", "a/b", "c"));
        assert!(m("*", "a/b", "c"));
        assert!(m("live/abc", "live", "abc"));
        assert!(!m("live/abc", "live", "abcd"));
        assert!(m("live/cam-*-hd", "live", "cam-12-hd"));
        assert!(!m("live/cam-*-hd", "live", "cam-12-sd"));
        assert!(m("live/a*b*c", "live", "aXbYbZc"));
        assert!(m("*/show", "studio", "show"));
        assert!(m("live/sub/*", "live/sub", "k"));
    }

    #[test]
    fn rejects_bad_patterns() {
        for p in ["", "abc", "live/", "/abc", "live//x", "live/a b"] {
            assert!(StreamPattern::new(p).is_err(), "{p:?} should be rejected");
        }
    }
}
