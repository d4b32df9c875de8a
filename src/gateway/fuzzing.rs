//! Entry points for the fuzz targets under `fuzz/` (docs/fuzzing.md), hidden from the API
//! documentation: each only forwards to the gateway's own private rule, so a target exercises
//! exactly the code a request reaches. Nothing else calls them (decisions.md D55).

use axum::http::{HeaderMap, HeaderName, Uri};

use super::proxy::Upstream;
use super::wsframe;

/// The scope-header rule of the handler: `Ok(None)` when absent or empty, refused when given
/// twice or not visible ASCII.
pub fn single_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, String> {
    super::handler::single_header(headers, name)
}

/// Whether a client's header is one the gateway always removes (its own identity headers and
/// other proxies' client-certificate headers, in any spelling).
pub fn is_reserved(name: &HeaderName) -> bool {
    super::proxy::is_reserved(name)
}

/// Whether a header is a scope header (`OpenAI-Organization`, `OpenAI-Project`), in any
/// spelling.
pub fn is_scope_header(name: &HeaderName) -> bool {
    super::proxy::is_scope_header(name)
}

/// Whether a WebSocket upgrade's headers announce a body (refused before any trust work).
pub fn announces_body(headers: &HeaderMap) -> bool {
    super::upgrade::announces_body(headers)
}

/// The URI a request for `original` is forwarded to under `upstream`.
pub fn uri_for(upstream: &Upstream, original: &Uri) -> Option<Uri> {
    upstream.uri_for(original)
}

/// The WebSocket frame reader of an upgraded connection (one direction of the stream).
#[derive(Debug, Default)]
pub struct FrameReader(wsframe::FrameTracker);

impl FrameReader {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.0.feed(bytes);
    }

    pub fn saw_close(&self) -> bool {
        self.0.saw_close()
    }

    pub fn at_boundary(&self) -> bool {
        self.0.at_boundary()
    }

    pub fn left_in_frame(&self) -> Option<u64> {
        self.0.left_in_frame()
    }
}

/// A close frame as the gateway writes one.
pub fn close_frame(code: u16, reason: &str, masked: bool) -> Vec<u8> {
    wsframe::close_frame(code, reason, masked)
}
