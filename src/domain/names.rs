//! Syntax of the names that end up in Kubernetes objects and URLs.

/// A lowercase RFC 1123 label: 1–63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_rfc1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The longest Helm release name (Helm refuses longer ones; a component id is its
/// HelmRelease's `releaseName`).
pub const HELM_RELEASE_NAME_MAX: usize = 53;

/// A lowercase DNS name (RFC 1123 subdomain): dot-separated labels, at most 253 characters.
pub fn is_dns_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_rfc1123_label)
}

/// The name part of a label or annotation key, and a non-empty label value:
/// 1–63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
fn is_qualified_name_part(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// A Kubernetes label or annotation key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn is_metadata_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_name(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(key),
    }
}

/// A Kubernetes label value: empty, or a qualified name part.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_qualified_name_part(value)
}

/// A chart tag: an OCI tag (`[A-Za-z0-9_][A-Za-z0-9._-]`, at most 128 characters), or the
/// SemVer version of a chart from an HTTPS Helm repository, whose build metadata adds `+`.
pub fn is_chart_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'+'))
}

/// The first character that has no place in a name or value a person reads: a control
/// character (line breaks allowed where `multiline`), a bidirectional override or isolate
/// (text that displays in another order than it is stored), or an invisible zero-width one.
pub fn unprintable(text: &str, multiline: bool) -> Option<char> {
    text.chars().find(|&c| {
        (c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
            || matches!(
                c,
                '\u{061C}'
                    | '\u{200B}'..='\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{FEFF}'
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1123_labels() {
        for ok in ["a", "cert-manager", "x1", "0", &"a".repeat(63)] {
            assert!(is_rfc1123_label(ok), "{ok} should be valid");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(!is_rfc1123_label(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("demo-cluster-01.k8s.example.com"));
        assert!(is_dns_name("localhost"));
        assert!(!is_dns_name("demo..example.com"));
        assert!(!is_dns_name(".example.com"));
        assert!(!is_dns_name("Demo.example.com"));
        assert!(!is_dns_name(&format!("{}.com", "a".repeat(250))));
    }

    #[test]
    fn chart_tags_and_printable_text() {
        for ok in ["v1.16.0", "1.2.3+rke2r1", "latest", "_x", &"a".repeat(128)] {
            assert!(is_chart_tag(ok), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a\"b", "a/b", &"a".repeat(129)] {
            assert!(!is_chart_tag(bad), "{bad}");
        }
        assert_eq!(unprintable("Edge Store 042 (Berlin)", false), None);
        assert_eq!(unprintable("line\nbreak", true), None);
        assert_eq!(unprintable("line\nbreak", false), Some('\n'));
        assert_eq!(unprintable("\u{1b}[31mred", true), Some('\u{1b}'));
        assert_eq!(unprintable("abc\u{202E}cba", false), Some('\u{202E}'));
        assert_eq!(unprintable("zero\u{200B}width", false), Some('\u{200B}'));
    }

    #[test]
    fn metadata_keys_and_values() {
        assert!(is_metadata_key("app"));
        assert!(is_metadata_key("app.kubernetes.io/name"));
        assert!(is_metadata_key("Team_Name.x"));
        assert!(!is_metadata_key("/name"));
        assert!(!is_metadata_key("Example.com/name"));
        assert!(!is_metadata_key("a/b/c"));
        assert!(!is_metadata_key("has space"));
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3-x"));
        assert!(!is_label_value("-x"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
