//! The static checks and the cost estimate of client filters, and the bounds a leaf must
//! stay within for filters to see it.

use super::*;

/// The estimate a refusal states, read back from its message.
fn stated_estimate(message: &str) -> u64 {
    let digits = message
        .split("its estimated cost is ")
        .nth(1)
        .and_then(|rest| rest.split(" steps").next())
        .unwrap_or_else(|| panic!("no estimate in: {message}"));
    digits.replace(',', "").parse().expect("a number")
}

#[track_caller]
fn refused_over_budget(source: &str) -> u64 {
    let err = ClientFilter::check_written(source).expect_err(source);
    assert!(err.contains("over the limit of 100,000"), "{source}: {err}");
    let estimate = stated_estimate(&err);
    assert!(estimate > MAX_COST, "{source}: {err}");
    estimate
}

#[test]
fn the_attack_filters_of_the_security_review_are_refused_with_their_estimate() {
    // Three nested comprehensions over a SAN list: 64³ = 262,144 turns of the innermost body
    // before counting what the body does.
    let nested_sans =
        "cert.san_dns.all(a, cert.san_dns.all(b, cert.san_dns.all(c, a+b+c != \"\")))";
    assert!(refused_over_budget(nested_sans) > 262_144);
    // 252 bytes: 8 nested `all` over a 10-element list literal, 10^8 turns (39 s to write).
    let list = "[0,1,2,3,4,5,6,7,8,9]";
    let vars = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut body = "a+b+c+d+e+f+g+h >= 0".to_owned();
    for v in vars.iter().rev() {
        body = format!("{list}.all({v},{body})");
    }
    assert!(body.len() <= 260, "{} bytes", body.len());
    assert!(refused_over_budget(&body) > 100_000_000);
}

#[test]
fn the_spec_example_and_ordinary_filters_are_accepted() {
    for good in [
        r#"cert.san_uri.exists(u, u.startsWith("spiffe://prod.example.com/"))"#,
        r#"cert.subject_cn == "client" || "a" in cert.san_dns"#,
        "cert.not_after - cert.not_before < 400 * 86400",
        r#"cert.sha256.size() == 64 && cert.serial != """#,
        r#"cert.san_dns.all(d, d.endsWith(".internal.test")) && size(cert.san_dns) > 0"#,
        r#"cert.subject_cn in ["svc-a", "svc-b", "svc-c"]"#,
        r#"cert.subject.matches("^CN=svc-[a-z]+,") && has(cert.issuer)"#,
        r#"cert.san_email.filter(e, e.endsWith("@example.com")).size() == 1"#,
        r#"cert.san_ip.map(ip, ip.startsWith("10.")).exists(x, x)"#,
        r#"type(cert.not_after) == int && cert["subject_cn"] != """#,
        r#"timestamp("2030-01-01T00:00:00Z") > timestamp(cert.not_after)"#,
    ] {
        let filter = ClientFilter::check_written(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert!(filter.cost() <= MAX_COST, "{good}");
    }
}

#[test]
fn an_evaluation_error_on_the_sample_is_no_reason_to_refuse() {
    // Index out of range on the one-name sample; valid for a client with six DNS names.
    let filter = ClientFilter::check_written(r#"cert.san_dns[5] == "x""#).expect("accepted");
    let mut facts = crate::x509::LeafFacts::sample();
    assert!(
        !filter.admits(&FilterInput::of(&facts)),
        "an error is false"
    );
    facts.san_dns = (0..6).map(|i| format!("{i}.example.test")).collect();
    facts.san_dns[5] = "x".into();
    assert!(filter.admits(&FilterInput::of(&facts)));
}

#[test]
fn what_cannot_work_on_any_certificate_is_refused_statically() {
    for (bad, says) in [
        ("cert.san_uri.exists(u,", "parse"),
        ("cert.nope == 1", "cert.nope, which does not exist"),
        ("has(cert.nope)", "cert.nope, which does not exist"),
        (r#"cert["nope"] == 1"#, "cert.nope, which does not exist"),
        ("other == 1", "unknown variable 'other'"),
        ("cert.san_dns.all(d, e == d)", "unknown variable 'e'"),
        ("a.b.c == 1", "unknown variable 'a'"),
        (
            "cert.subject.startswith(\"x\")",
            "unknown function 'startswith'",
        ),
        ("cert.subject_cn", "evaluates to a string, not a boolean"),
        ("cert.san_dns", "evaluates to a list, not a boolean"),
        ("cert.not_after + 1", "evaluates to a int, not a boolean"),
        // Only an evaluation shows this one a string.
        (r#"cert["subject_" + "cn"]"#, "not a boolean"),
        ("cert.subject.matches(cert.subject_cn)", "string literal"),
        (
            r#"cert.subject.matches("(")"#,
            "not a valid regular expression",
        ),
        (
            r#"cert.subject.matches("\\w{500}")"#,
            "compiles to more than 64 KiB",
        ),
        ("Msg{a: 1} == Msg{a: 1}", "message of type 'Msg'"),
    ] {
        let err = ClientFilter::check_written(bad).expect_err(bad);
        assert!(err.contains(says), "{bad}: {err}");
    }
    // The variables of comprehensions are names too, in their own scope only.
    assert!(ClientFilter::compile("cert.san_dns.all(d, d != \"\") && [1].all(d, d > 0)").is_ok());
}

/// `1 + 1 + … + 1 > 0` with `n` additions nests `n + 1` levels below its root.
fn chain_of(n: usize) -> String {
    format!("1{} > 0", "+1".repeat(n))
}

#[test]
fn nesting_is_bounded_on_both_sides() {
    // Evaluation recurses once per level: before this bound, 1,600 levels (a 3.2 KiB filter)
    // overflowed a 2 MiB thread stack and aborted the process.
    assert!(ClientFilter::check_written(&chain_of(MAX_DEPTH - 2)).is_ok());
    let err = ClientFilter::check_written(&chain_of(MAX_DEPTH - 1)).expect_err("too deep");
    assert!(err.contains("nests more than 32 levels"), "{err}");
    // Logical chains are balanced by the parser: a long `||` list is shallow.
    let names: Vec<String> = (0..100)
        .map(|i| format!("cert.subject_cn == \"n{i}\""))
        .collect();
    assert!(ClientFilter::check_written(&names.join(" || ")).is_ok());
}

#[test]
fn the_budget_is_held_on_both_sides() {
    // Each SAN name against a list literal of `k` names: the cost grows with `k`.
    let filter = |k: usize| {
        let names: Vec<String> = (0..k).map(|i| format!("\"{i}\"")).collect();
        format!("cert.san_dns.all(d, d in [{}])", names.join(","))
    };
    let (mut lo, mut hi) = (1usize, 400usize);
    assert!(ClientFilter::compile(&filter(lo)).is_ok());
    assert!(ClientFilter::compile(&filter(hi)).is_err());
    while hi - lo > 1 {
        let mid = usize::midpoint(lo, hi);
        if ClientFilter::compile(&filter(mid)).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let under = ClientFilter::check_written(&filter(lo)).expect("just under the budget");
    assert!(under.cost() <= MAX_COST);
    assert!(
        under.cost() > MAX_COST - 2_000,
        "{} is not close",
        under.cost()
    );
    let over = refused_over_budget(&filter(hi));
    assert!(over < MAX_COST + 2_000, "{over} is not close");
    assert!(over > under.cost());
}

#[test]
fn a_regular_expression_costs_its_compilation_on_every_call() {
    // The cel crate compiles the pattern on each call (about 80 µs even for a small one): once
    // on the subject is cheap, once per SAN entry is not.
    let once = ClientFilter::compile(r#"cert.subject.matches("^CN=svc-[a-z]+,")"#).unwrap();
    assert!(once.cost() < 5_000, "{}", once.cost());
    let err = ClientFilter::compile(r#"cert.san_dns.all(d, d.matches("^[a-z0-9.-]+$"))"#)
        .expect_err("64 compilations");
    assert!(err.contains("over the limit"), "{err}");
    // A larger program costs more to compile and to run.
    let large = ClientFilter::compile(r#"cert.subject.matches("[a-z]{800}")"#).unwrap();
    assert!(large.cost() > 6 * once.cost(), "{}", large.cost());
}

#[test]
fn nested_comprehensions_multiply_and_map_filter_grow_linearly() {
    let one = ClientFilter::compile("cert.san_dns.exists(d, d == \"x\")").unwrap();
    let two = ClientFilter::compile("cert.san_ip.exists(i, cert.san_ip.exists(j, i == j))");
    // 64 × 64 comparisons of 1 KiB strings: over, while one loop is far under.
    assert!(one.cost() < 20_000, "{}", one.cost());
    assert!(two.is_err());
    // `map` appends in place: its cost is linear in its list, not quadratic.
    let mapped = ClientFilter::compile("cert.san_dns.map(d, d).size() > 0").unwrap();
    assert!(mapped.cost() < 3 * one.cost(), "{}", mapped.cost());
}

fn facts_with(dns: usize, uri_len: usize) -> crate::x509::LeafFacts {
    let mut facts = crate::x509::LeafFacts::sample();
    facts.san_dns = (0..dns).map(|i| format!("n{i}.example.test")).collect();
    facts.san_uri = vec![format!("spiffe://{}", "a".repeat(uri_len - 9))];
    facts
}

#[test]
fn a_leaf_over_the_estimates_bounds_passes_no_filter() {
    let filter = ClientFilter::compile("size(cert.san_dns) >= 0").unwrap();
    assert!(filter.admits(&FilterInput::of(&facts_with(64, 100))));
    assert!(!FilterInput::of(&facts_with(65, 100)).within_bounds());
    assert!(!filter.admits(&FilterInput::of(&facts_with(65, 100))));
    assert!(filter.admits(&FilterInput::of(&facts_with(1, 1024))));
    assert!(!filter.admits(&FilterInput::of(&facts_with(1, 1025))));
}

#[test]
fn a_stored_filter_is_compiled_when_first_used_and_one_over_the_checks_refuses() {
    let stored = StoredFilter::new("cert_1", "cert.subject_cn == \"client\"");
    assert!(stored.compiled.get().is_none(), "not compiled when made");
    assert!(stored.admits(&FilterInput::of(&crate::x509::LeafFacts::sample())));
    // Written before the budget existed: refuses everyone, never runs.
    let heavy = StoredFilter::new(
        "cert_2",
        "cert.san_dns.all(a, cert.san_dns.all(b, cert.san_dns.all(c, a+b+c != \"\")))",
    );
    assert!(!heavy.admits(&FilterInput::of(&crate::x509::LeafFacts::sample())));
    assert!(heavy.compiled().is_err());
}

#[test]
fn estimates_are_written_with_thousands_separators() {
    assert_eq!(cost::thousands(262_144), "262,144");
    assert_eq!(cost::thousands(100_000), "100,000");
    assert_eq!(cost::thousands(999), "999");
    assert_eq!(cost::thousands(1_000_000), "1,000,000");
}
