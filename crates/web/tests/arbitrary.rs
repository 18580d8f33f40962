//! Arbitrary requests and bodies: the router always answers with a status and a JSON error for
//! anything it refuses, never a panic; the control parser names what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use daemon::Handle;
use daemon::control::Control;
use daemon::runtime::Daemon;
use proptest::prelude::*;

/// A daemon whose devices are all unreachable: the router still has a full shared state.
fn shared() -> (Daemon, Handle) {
    let dir = std::env::temp_dir().join(format!("p2p-web-arb-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let toml = format!(
        "[pylon]\nlink = \"tcp://127.0.0.1:1\"\n\n[[pack]]\nlink = \"tcp://127.0.0.1:2\"\n\n[state]\nstate_file = \"{0}/s.json\"\nevent_log = \"{0}/e.jsonl\"\n",
        dir.display()
    );
    let daemon = Daemon::start(daemon::Config::parse(&toml, "t").unwrap()).unwrap();
    let shared = daemon.handle();
    (daemon, shared)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn control_parsing_never_panics(body in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Control::parse(&body);
    }

    #[test]
    fn control_parsing_of_json_objects_names_the_problem(
        action in "[a-z_]{0,24}",
        key in "[a-z_]{1,12}",
        value in prop_oneof![Just("null".to_owned()), "-?[0-9]{1,7}", "\"[a-z_]{0,10}\""],
    ) {
        let body = format!("{{\"action\":\"{action}\",\"{key}\":{value}}}");
        if let Err(e) = Control::parse(body.as_bytes()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn the_router_answers_anything() {
    let (daemon, shared) = shared();
    let api = web::Api::new(shared, Some("a-long-enough-token".into()));
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 3000, ..ProptestConfig::default() });
    let strategy = (
        prop_oneof![
            Just("GET".to_owned()),
            Just("POST".to_owned()),
            Just("HEAD".to_owned()),
            Just("PUT".to_owned()),
            "[A-Z]{1,8}",
        ],
        prop_oneof![
            Just("/api/v1/control".to_owned()),
            Just("/api/v1/events".to_owned()),
            "/api/v1/events\\?[ -~]{0,30}",
            "/[ -~]{0,60}",
        ],
        prop::option::of(prop_oneof![Just("Bearer a-long-enough-token".to_owned()), "[ -~]{0,40}"]),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
    );
    runner
        .run(&strategy, |(method, url, auth, body)| {
            let reply = api.route(&web::Incoming {
                method: &method,
                url: &url,
                authorization: auth.as_deref(),
                body: body.as_deref(),
            });
            prop_assert!((200..600).contains(&reply.status));
            if reply.status >= 400 {
                let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
                prop_assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
            }
            Ok(())
        })
        .unwrap();
    daemon.stop();
}

/// Issue 10 item 9: the scheme of `Authorization` is case-insensitive (RFC 7235 section 2.1).
#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let (daemon, shared) = shared();
    let api = web::Api::new(shared, Some("a-long-enough-token".into()));
    let ask = |authorization: &str| {
        api.route(&web::Incoming {
            method: "POST",
            url: "/api/v1/control",
            authorization: Some(authorization),
            body: Some(b"{\"action\":\"no_such_action\"}"),
        })
        .status
    };
    // Past the token check, refused for the body.
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        assert_eq!(ask(&format!("{scheme} a-long-enough-token")), 400, "{scheme}");
    }
    assert_eq!(ask("Basic a-long-enough-token"), 401);
    assert_eq!(ask("Bearer wrong-token-of-a-length"), 401);
    daemon.stop();
}
