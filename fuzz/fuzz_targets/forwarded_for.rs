//! The client behind `X-Forwarded-For` (`nexus_formats::http::forwarded_client`).
//!
//! Input: one byte choosing the peer (two trusted proxies, two clients), then header values,
//! one a line. Checks that only a trusted peer's header counts, and that the address chosen is
//! the peer or an untrusted address the header holds.

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use nexus_formats::http::forwarded_client;

fuzz_target!(|input: &[u8]| {
    let Some((choice, rest)) = input.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let ip = |text: &str| text.parse::<IpAddr>().expect("a literal address");
    let trusted = [ip("10.0.0.1"), ip("fd00::1")];
    let peers = [trusted[0], trusted[1], ip("192.0.2.1"), ip("2001:db8::1")];
    let peer = peers[usize::from(*choice) % peers.len()];
    let values: Vec<&str> = rest.split('\n').collect();

    let client = forwarded_client(peer, values.iter().copied(), &trusted);

    if !trusted.contains(&peer) || client == peer {
        assert_eq!(client, peer);
        return;
    }
    assert!(!trusted.contains(&client), "{client} is a proxy");
    let listed = values
        .iter()
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().parse::<IpAddr>() == Ok(client));
    assert!(listed, "{client} is not in {values:?}");
});
