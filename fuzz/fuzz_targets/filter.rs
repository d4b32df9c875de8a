//! CEL client filters (`trust::filter`): compile and evaluate any source over any
//! certificate. Input: the filter's source, a NUL byte, then a leaf certificate's DER (no NUL:
//! the source alone, over the sample leaf).
//!
//! Properties beside no panic (and no run past libFuzzer's timeout: a filter that passes the
//! checks is bounded work): a filter a write accepts (`check_written`) compiles; the stored
//! filter (compiled on first use, as gateways do) gives the verdict the compiled one gives,
//! and the same verdict twice; a leaf over the bounds passes no filter.
#![no_main]

use certgate::trust::filter::{FilterInput, StoredFilter};
use certgate::trust::ClientFilter;
use certgate::x509::LeafFacts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (source, der) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    // Writes refuse filters over 4 KiB (api::certificates); longer ones cost time, not coverage.
    if source.len() > 4096 {
        return;
    }
    let compiled = ClientFilter::compile(source);
    let written = ClientFilter::check_written(source);
    if written.is_ok() {
        assert!(
            compiled.is_ok(),
            "accepted on write but does not compile: {source:?}"
        );
    }
    let input = match der {
        Some(der) => {
            let _ = LeafFacts::of(der);
            FilterInput::of_leaf(der)
        }
        None => FilterInput::of(&LeafFacts::sample()),
    };
    let stored = StoredFilter::new("cert_fuzz", source);
    let verdict = stored.admits(&input);
    assert_eq!(
        verdict,
        stored.admits(&input),
        "not deterministic: {source:?}"
    );
    match &compiled {
        Ok(filter) => assert_eq!(verdict, filter.admits(&input)),
        Err(_) => assert!(!verdict, "a filter that does not compile admitted"),
    }
    if !input.within_bounds() {
        assert!(!verdict, "a leaf over the bounds passed {source:?}");
    }
});
