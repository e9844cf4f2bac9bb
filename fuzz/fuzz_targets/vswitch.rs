//! The virtual switch (axvswitch) with small bounds the input picks (ports, queue frames,
//! longest frame, table entries) under a sequence of sends (frames of any length from a
//! small pool of addresses, group ones included, from any port, real or not), receives,
//! detaches and attaches.
//!
//! Checked besides "no panic": no queue ever holds more than its bound, the table never
//! more than its size; a frame is never queued back on its sender nor on a detached port;
//! a frame to a learned unicast address reaches that port only; every frame received is
//! one that was sent, within the length bounds; a port's counters add up (queued =
//! received + pending, with everything dropped on detach counted apart).

use axvisor_fuzz::Input;
use axvswitch::{Mac, PortId, Switch, SwitchConfig, ETH_HEADER};

/// An address from a pool of six: four unicast, one multicast, broadcast.
fn mac(input: &mut Input<'_>) -> Mac {
    match input.u8() % 6 {
        4 => Mac([0x01, 0x00, 0x5e, 0, 0, 1]),
        5 => Mac::BROADCAST,
        n => Mac([0x52, 0x54, 0, 0, 0, n]),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let config = SwitchConfig {
        ports: usize::from(input.u8() % 9),
        queue_frames: usize::from(input.u8() % 6),
        max_frame: usize::from(input.u8() % 80),
        table_entries: usize::from(input.u8() % 5),
    };
    let Ok(mut sw) = Switch::new(config) else {
        return;
    };
    let ports = config.ports;
    // Frames lost when a port was detached, per port (they were queued, never received).
    let mut flushed = vec![0u64; ports];
    let mut sent_by = vec![0u64; ports + 2];
    while !input.is_empty() {
        let port = PortId(usize::from(input.u8()) % (ports + 2));
        match input.u8() % 8 {
            0..=3 => {
                let (dst, src) = (mac(&mut input), mac(&mut input));
                let len = usize::from(input.u8() % 96);
                let mut frame = vec![0u8; len];
                for (i, b) in dst.0.iter().chain(src.0.iter()).enumerate().take(len) {
                    frame[i] = *b;
                }
                let expected = if dst.is_group() { None } else { sw.lookup(dst) };
                if let Ok(to) = sw.send(port, &frame) {
                    {
                        sent_by[port.0] += 1;
                        assert!(len >= ETH_HEADER && len <= config.max_frame);
                        assert!(!src.is_group());
                        assert!(!to.contains(port), "queued back on its sender");
                        for p in to.iter() {
                            assert!(sw.is_attached(p), "queued on detached {p:?}");
                        }
                        if let Some(known) = expected {
                            if known != port {
                                assert!(to.iter().all(|p| p == known), "{to:?} for {known:?}");
                            }
                        }
                    }
                }
            }
            4 | 5 => {
                if let Some(f) = sw.recv(port) {
                    assert!(f.len() >= ETH_HEADER && f.len() <= config.max_frame);
                }
            }
            6 => {
                if port.0 < ports {
                    flushed[port.0] += sw.pending(port) as u64;
                }
                sw.detach(port);
                assert_eq!(sw.pending(port), 0);
                assert!(sw.lookup(Mac([0x52, 0x54, 0, 0, 0, 0])) != Some(port));
            }
            _ => sw.attach(port),
        }
        assert!(sw.table_len() <= config.table_entries);
        for p in 0..ports {
            let id = PortId(p);
            assert!(sw.pending(id) <= config.queue_frames);
            let s = sw.stats(id).unwrap();
            assert_eq!(s.queued, s.received + sw.pending(id) as u64 + flushed[p]);
            assert_eq!(s.sent, sent_by[p]);
        }
    }
}
