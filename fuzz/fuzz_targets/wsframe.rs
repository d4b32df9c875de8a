//! The WebSocket frame reader of upgraded connections (src/gateway/wsframe.rs) over any byte
//! stream. Input: `[chunk size][stream]`.
//!
//! Properties: no panic; the reader's state after a stream does not depend on how the stream
//! was cut into reads (whole, in fixed chunks, or as the relay reads: never past the current
//! frame); and at a frame boundary, a close frame as the gateway writes it is read as exactly
//! one whole close frame, whose reason is UTF-8.
#![no_main]

use certgate::gateway::fuzzing::{close_frame, FrameReader};
use libfuzzer_sys::fuzz_target;

fn state(r: &FrameReader) -> (bool, bool, Option<u64>) {
    (r.saw_close(), r.at_boundary(), r.left_in_frame())
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let mut whole = FrameReader::default();
    whole.feed(stream);

    let mut chunked = FrameReader::default();
    for piece in stream.chunks(usize::from(chunk).max(1)) {
        chunked.feed(piece);
    }
    assert_eq!(state(&whole), state(&chunked), "cut into chunks of {chunk}");

    // As the relay reads: at most what is left of the current frame, a frame at a time.
    let mut relay = FrameReader::default();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = relay
            .left_in_frame()
            .map_or(rest.len(), |left| {
                usize::try_from(left).unwrap_or(usize::MAX)
            })
            .min(rest.len());
        relay.feed(&rest[..n]);
        rest = &rest[n..];
        if n < rest.len() {
            assert!(relay.left_in_frame().is_some() || relay.at_boundary());
        }
    }
    assert_eq!(state(&whole), state(&relay), "read frame by frame");

    // A close frame of the gateway's, with a reason taken from the input (cut to fit).
    let reason = String::from_utf8_lossy(&stream[..stream.len().min(200)]);
    for masked in [false, true] {
        let frame = close_frame(1008, &reason, masked);
        assert!(
            frame.len() <= 2 + 4 + 125,
            "a control frame's payload is at most 125 bytes"
        );
        // The reason is UTF-8 (RFC 6455 §5.5.1: a peer fails the connection otherwise).
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
        assert_eq!(payload[..2], 1008u16.to_be_bytes());
        assert!(
            std::str::from_utf8(&payload[2..]).is_ok(),
            "reason cut inside a character"
        );
        let mut fresh = FrameReader::default();
        for (i, byte) in frame.iter().enumerate() {
            assert!(!fresh.at_boundary() || i == 0);
            fresh.feed(std::slice::from_ref(byte));
        }
        assert!(fresh.saw_close() && fresh.at_boundary(), "{frame:?}");
        if whole.at_boundary() {
            let mut after = FrameReader::default();
            after.feed(stream);
            after.feed(&frame);
            assert!(after.saw_close() && after.at_boundary());
        }
    }
});
