//! Just enough of WebSocket framing (RFC 6455 §5.2) to relay an upgraded connection byte for
//! byte and still close it cleanly: where each frame ends, and how to write a close frame.
//! Payloads are never decoded, so extensions the peers negotiate (compression, say) pass
//! through untouched.

/// Follows the frames of one direction of a WebSocket stream, byte by byte.
#[derive(Debug, Default)]
pub(super) struct FrameTracker {
    /// Bytes of the current frame's header read so far.
    header: Vec<u8>,
    /// Bytes of the current frame's payload still to come (once the header is complete).
    payload_left: u64,
    /// Close frames whose header has gone by.
    closes: u32,
}

impl FrameTracker {
    /// Accounts for `bytes` of the stream.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let take = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload_left -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            if let Some(len) = header_complete(&self.header) {
                if self.header[0] & 0x0f == 0x8 {
                    self.closes += 1;
                }
                self.header.clear();
                self.payload_left = len;
            }
        }
    }

    /// Whether a close frame has been seen (its header, at least).
    pub(super) fn saw_close(&self) -> bool {
        self.closes > 0
    }

    /// Whether the stream stands between two frames.
    pub(super) fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.payload_left == 0
    }

    /// Most bytes that may be read next without going past the end of the current frame;
    /// `None` between frames. A header's length is unknown until its first two bytes are in,
    /// so inside a header this is one byte at a time.
    pub(super) fn left_in_frame(&self) -> Option<u64> {
        if self.at_boundary() {
            None
        } else if self.payload_left > 0 {
            Some(self.payload_left)
        } else {
            Some(1)
        }
    }
}

/// The payload length of a frame whose header is `header`, once `header` is the whole header.
fn header_complete(header: &[u8]) -> Option<u64> {
    if header.len() < 2 {
        return None;
    }
    let masked = header[1] & 0x80 != 0;
    let len7 = header[1] & 0x7f;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let total = 2 + ext + if masked { 4 } else { 0 };
    if header.len() < total {
        return None;
    }
    Some(match len7 {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => u64::from_be_bytes(header[2..10].try_into().unwrap_or([0; 8])),
        n => u64::from(n),
    })
}

/// A close frame with `code` and `reason` (cut between characters to fit a control frame: a
/// reason must be UTF-8, RFC 6455 §5.5.1). Frames a client sends must be masked (`masked`),
/// frames a server sends must not.
pub(super) fn close_frame(code: u16, reason: &str, masked: bool) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    let len = u8::try_from(payload.len()).unwrap_or(125);
    let mut frame = vec![0x88];
    if masked {
        let key: [u8; 4] = rand::random();
        frame.push(0x80 | len);
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.push(len);
        frame.extend_from_slice(&payload);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_frames_of_every_length_form_split_anywhere() {
        // Unmasked 5-byte text, masked 300-byte binary (16-bit length), unmasked 70,000-byte
        // binary (64-bit length).
        let mut stream = vec![0x81, 5];
        stream.extend_from_slice(b"hello");
        stream.extend_from_slice(&[0x82, 0x80 | 0x7e, 0x01, 0x2c, 1, 2, 3, 4]);
        stream.extend(std::iter::repeat_n(7u8, 300));
        stream.extend_from_slice(&[0x82, 127]);
        stream.extend_from_slice(&70_000u64.to_be_bytes());
        stream.extend(std::iter::repeat_n(9u8, 70_000));
        let boundaries = [0, 7, 7 + 8 + 300, stream.len()];
        for chunk in [1, 2, 3, 7, 64, 4096, stream.len()] {
            let mut t = FrameTracker::default();
            let mut seen = vec![0];
            for (i, piece) in stream.chunks(chunk).enumerate() {
                for (j, byte) in piece.iter().enumerate() {
                    t.feed(std::slice::from_ref(byte));
                    if t.at_boundary() {
                        seen.push(i * chunk + j + 1);
                    }
                }
            }
            assert_eq!(seen, boundaries, "chunk {chunk}");
        }
        let mut t = FrameTracker::default();
        t.feed(&stream);
        assert!(!t.saw_close());
        t.feed(&close_frame(1000, "bye", true));
        assert!(t.saw_close() && t.at_boundary());
        let mut t = FrameTracker::default();
        t.feed(&stream[..10]);
        assert_eq!(t.left_in_frame(), Some(1), "inside the second header");
        t.feed(&stream[10..20]);
        assert_eq!(t.left_in_frame(), Some(295));
    }

    #[test]
    fn close_frames_are_well_formed() {
        let f = close_frame(1008, "client certificate no longer trusted", false);
        assert_eq!(f[0], 0x88);
        assert_eq!(usize::from(f[1]), f.len() - 2);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 1008);
        let m = close_frame(1001, "", true);
        assert_eq!(m[1], 0x80 | 2);
        let key = &m[2..6];
        assert_eq!(u16::from_be_bytes([m[6] ^ key[0], m[7] ^ key[1]]), 1001);
        let long = close_frame(1008, &"x".repeat(500), false);
        assert!(long.len() <= 2 + 125);
    }

    #[test]
    fn a_long_reason_is_cut_between_characters() {
        // Found by the wsframe fuzz target: 123 bytes end inside the 'é' at bytes 122-123, and
        // a reason that is not UTF-8 makes the peer fail the connection (RFC 6455 §5.5.1).
        let reason = format!("{}é and more", "x".repeat(122));
        for masked in [false, true] {
            let frame = close_frame(1008, &reason, masked);
            let (key, payload) = if masked {
                (frame[2..6].to_vec(), &frame[6..])
            } else {
                (vec![0; 4], &frame[2..])
            };
            let payload: Vec<u8> = payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            let text = std::str::from_utf8(&payload[2..]).expect("the reason is UTF-8");
            assert_eq!(text, "x".repeat(122));
        }
    }
}
