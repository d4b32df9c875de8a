//! Which request paths can be forwarded under the upstream's prefix (decisions.md D33
//! "Paths"): a pure function of the path, so that every encoding it refuses or lets through is
//! a unit test here.

/// Whether a request path can be forwarded under the upstream's prefix without any way out of
/// it (decisions.md D33); `Err` says why not, for the 400.
///
/// The path is forwarded exactly as received, so the question is what an upstream (or a proxy
/// between) may make of it. Many decode it once and then resolve dot segments (Python's
/// `http.server`, most frameworks); some read `\` as `/` (Windows servers, WHATWG URL parsers);
/// Java servlet containers cut a segment at `;` (`..;` is `..` to them); C code stops at a NUL;
/// lenient UTF-8 decoders read the overlong `%C0%AE` as `.`. So, each segment percent-decoded
/// once must hold no `/` and no `\` (an encoded slash, a backslash raw or encoded), no control
/// character, only UTF-8, and must not be `.` or `..`, whole or before a `;`. The path itself
/// must start with `/` (`OPTIONS *` would otherwise become `/prefix*`).
///
/// Decoding more than once is the upstream's own bug and not modelled: `%252e` is forwarded as
/// it is, and an upstream that decodes once (as RFC 3986 says) reads the text `%2e`, not a dot.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("The request target must be a path starting with '/'.".to_owned());
    }
    for segment in path.split('/') {
        let decoded = percent_decode(segment);
        if decoded.contains(&b'/') {
            return Err(
                "The request path has an encoded slash (%2F) inside a segment; send \
                        the path without it (the upstream could decode it into a separator)."
                    .to_owned(),
            );
        }
        if decoded.contains(&b'\\') {
            return Err(
                "The request path has a backslash (raw or %5C); send the path without \
                        it (some upstreams read it as a separator)."
                    .to_owned(),
            );
        }
        if decoded.iter().any(u8::is_ascii_control) {
            return Err(
                "The request path has a control character (such as %00); send the path \
                 without it."
                    .to_owned(),
            );
        }
        let Ok(text) = std::str::from_utf8(&decoded) else {
            return Err(
                "The request path does not decode to UTF-8; percent-encode UTF-8 \
                        bytes only."
                    .to_owned(),
            );
        };
        let name = text.split(';').next().unwrap_or_default();
        if name == "." || name == ".." {
            return Err(format!(
                "The request path has a '{name}' segment (once decoded); send a normalized path."
            ));
        }
    }
    Ok(())
}

/// Percent-decodes a path segment once, to bytes; a `%` not followed by two hex digits stays as
/// it is (`+` is not a space in a path).
fn percent_decode(segment: &str) -> Vec<u8> {
    fn hex(digit: u8) -> Option<u8> {
        char::from(digit)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            if let [hi, lo, after @ ..] = tail {
                if let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo)) {
                    out.push(hi << 4 | lo);
                    rest = after;
                    continue;
                }
            }
        }
        out.push(first);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{check_path, percent_decode};

    #[track_caller]
    fn refused(path: &str, why: &str) {
        match check_path(path) {
            Err(message) => assert!(message.contains(why), "{path}: {message}"),
            Ok(()) => panic!("{path} passed"),
        }
    }

    #[test]
    fn the_paths_of_issue_30_are_refused() {
        refused("/..%2Fsecret.txt", "encoded slash");
        refused("/%2e%2e%2fsecret.txt", "encoded slash");
        refused("/.%2e%2Fsecret.txt", "encoded slash");
    }

    #[test]
    fn encoded_slashes_and_backslashes_are_refused_in_any_case() {
        for path in ["/a%2Fb", "/a%2fb", "/v1/files/%2F", "/%2F%2F"] {
            refused(path, "encoded slash");
        }
        for path in ["/a%5Cb", "/a%5cb", "/..%5csecret", "/a\\b", "/..\\secret"] {
            refused(path, "backslash");
        }
    }

    #[test]
    fn dot_segments_are_refused_raw_or_decoded() {
        for path in [
            "/..",
            "/.",
            "/../admin",
            "/v1/./models",
            "/v1/%2e%2e/admin",
            "/v1/%2E%2E",
            "/v1/.%2E/admin",
            "/v1/%2e./admin",
            "/v1/%2e/models",
            "/v1/..;/admin",
            "/v1/..;jsessionid=1/admin",
            "/v1/.;x/admin",
            "/v1/%2e%2e%3b/admin",
        ] {
            refused(path, "segment (once decoded)");
        }
    }

    #[test]
    fn control_characters_and_other_encodings_of_a_dot_are_refused() {
        refused("/v1/..%00/admin", "control character");
        refused("/v1/models%00.json", "control character");
        refused("/v1/a%0d%0aX-Injected:%201", "control character");
        // Overlong UTF-8 for '.', '/' and '\': lenient decoders read them as the ASCII byte.
        refused("/%c0%ae%c0%ae/admin", "UTF-8");
        refused("/..%c0%afadmin", "UTF-8");
        refused("/..%c1%9cadmin", "UTF-8");
        refused("/%e0%80%ae%e0%80%ae/admin", "UTF-8");
        refused("*", "starting with '/'");
        refused("", "starting with '/'");
    }

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "/",
            "/v1/models",
            "/v1/files/file-abc123/content",
            "/v1/files/my..file.txt",
            "/v1/files/...",
            "/v1/.well-known/x",
            "/v1/a%2eb",
            "/v1/%2e%2e%2e",
            "/v1/..a",
            "/v1/with%20space",
            "/v1/caf%C3%A9",
            "/v1/café",
            "/v1//double",
            "/v1/a;b",
            "/v1/100%",
            "/v1/%zz",
            "/v1/a+b",
            // Decoded once, these are the text `%2e%2e` and `%2f`: not a dot segment and not
            // a separator to an upstream that decodes once.
            "/%252e%252e/admin",
            "/..%252fadmin",
        ] {
            assert_eq!(check_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn decoding_is_once_and_keeps_broken_escapes() {
        assert_eq!(percent_decode("a%2eb"), b"a.b");
        assert_eq!(percent_decode("%252e"), b"%2e");
        assert_eq!(percent_decode("%2"), b"%2");
        assert_eq!(percent_decode("%%2e"), b"%.");
        assert_eq!(percent_decode("a+b"), b"a+b");
        assert_eq!(percent_decode("%C3%A9"), "é".as_bytes());
    }
}
