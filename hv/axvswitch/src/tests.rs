extern crate std;

use super::*;
use alloc::vec;

const A: Mac = Mac([0x52, 0x54, 0, 0, 0, 0xa]);
const B: Mac = Mac([0x52, 0x54, 0, 0, 0, 0xb]);
const C: Mac = Mac([0x52, 0x54, 0, 0, 0, 0xc]);

fn frame(dst: Mac, src: Mac, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

fn switch(ports: usize) -> Switch {
    Switch::new(SwitchConfig::with_ports(ports)).unwrap()
}

#[test]
fn bad_configs_are_refused() {
    let ok = SwitchConfig::with_ports(2);
    assert_eq!(
        Switch::new(SwitchConfig { ports: 0, ..ok }).unwrap_err(),
        ConfigError::Ports(0)
    );
    assert_eq!(
        Switch::new(SwitchConfig { ports: 65, ..ok }).unwrap_err(),
        ConfigError::Ports(65)
    );
    assert_eq!(
        Switch::new(SwitchConfig {
            queue_frames: 0,
            ..ok
        })
        .unwrap_err(),
        ConfigError::QueueFrames
    );
    assert_eq!(
        Switch::new(SwitchConfig {
            max_frame: 13,
            ..ok
        })
        .unwrap_err(),
        ConfigError::MaxFrame(13)
    );
    assert_eq!(
        Switch::new(SwitchConfig {
            table_entries: 0,
            ..ok
        })
        .unwrap_err(),
        ConfigError::TableEntries
    );
}

#[test]
fn unknown_destination_floods_then_learned_one_is_unicast() {
    let mut sw = switch(3);
    let f = frame(B, A, b"hello");
    let to = sw.send(PortId(0), &f).unwrap();
    assert_eq!(to.iter().collect::<Vec<_>>(), vec![PortId(1), PortId(2)]);
    assert_eq!(sw.recv(PortId(1)).unwrap(), f);
    assert_eq!(sw.recv(PortId(2)).unwrap(), f);
    assert_eq!(sw.recv(PortId(0)), None);
    assert_eq!(sw.lookup(A), Some(PortId(0)));

    // B answers: A is known, so only port 0 gets it; B is learned on port 1.
    let r = frame(A, B, b"world");
    let to = sw.send(PortId(1), &r).unwrap();
    assert_eq!(to.iter().collect::<Vec<_>>(), vec![PortId(0)]);
    assert_eq!(sw.recv(PortId(0)).unwrap(), r);
    assert_eq!(sw.pending(PortId(2)), 0);

    // Now A to B goes to port 1 only.
    let to = sw.send(PortId(0), &frame(B, A, b"again")).unwrap();
    assert_eq!(to.iter().collect::<Vec<_>>(), vec![PortId(1)]);
    assert_eq!(sw.pending(PortId(2)), 0);
}

#[test]
fn broadcast_and_multicast_go_to_every_other_port() {
    let mut sw = switch(4);
    sw.send(PortId(1), &frame(B, B, b"")).unwrap(); // B learned on 1
    for dst in [Mac::BROADCAST, Mac([0x01, 0x00, 0x5e, 0, 0, 1])] {
        let to = sw.send(PortId(0), &frame(dst, A, b"arp")).unwrap();
        assert_eq!(to.len(), 3, "{dst}");
        assert!(!to.contains(PortId(0)));
    }
}

#[test]
fn destination_on_the_sending_port_is_filtered() {
    let mut sw = switch(2);
    sw.send(PortId(0), &frame(Mac::BROADCAST, A, b"")).unwrap();
    sw.send(PortId(0), &frame(Mac::BROADCAST, C, b"")).unwrap();
    let _ = sw.recv(PortId(1));
    let _ = sw.recv(PortId(1));
    let to = sw.send(PortId(0), &frame(C, A, b"")).unwrap();
    assert!(to.is_empty());
    assert_eq!(sw.pending(PortId(1)), 0);
}

#[test]
fn a_moved_address_is_relearned() {
    let mut sw = switch(3);
    sw.send(PortId(0), &frame(Mac::BROADCAST, A, b"")).unwrap();
    assert_eq!(sw.lookup(A), Some(PortId(0)));
    sw.send(PortId(2), &frame(Mac::BROADCAST, A, b"")).unwrap();
    assert_eq!(sw.lookup(A), Some(PortId(2)));
    assert_eq!(sw.table_len(), 1);
}

#[test]
fn bad_frames_are_refused_and_counted() {
    let mut sw = switch(2);
    assert_eq!(sw.send(PortId(0), &[0; 13]), Err(SendError::TooShort(13)));
    assert_eq!(
        sw.send(PortId(0), &vec![0; 1515]),
        Err(SendError::TooLong(1515))
    );
    assert_eq!(
        sw.send(PortId(0), &frame(B, Mac::BROADCAST, b"")),
        Err(SendError::GroupSource(Mac::BROADCAST))
    );
    assert_eq!(
        sw.send(PortId(9), &frame(B, A, b"")),
        Err(SendError::NoSuchPort(PortId(9)))
    );
    let s = sw.stats(PortId(0)).unwrap();
    assert_eq!((s.dropped_bad, s.sent), (3, 0));
    assert_eq!(sw.pending(PortId(1)), 0);
    assert_eq!(sw.table_len(), 0);
    // The longest accepted frame is exactly max_frame.
    assert!(sw.send(PortId(0), &vec![0x02; 1514]).is_ok());
}

#[test]
fn a_flooding_port_fills_the_queue_and_the_rest_is_dropped_and_counted() {
    let mut sw = Switch::new(SwitchConfig {
        queue_frames: 8,
        ..SwitchConfig::with_ports(2)
    })
    .unwrap();
    for i in 0..1000u32 {
        sw.send(PortId(0), &frame(Mac::BROADCAST, A, &i.to_le_bytes()))
            .unwrap();
    }
    assert_eq!(sw.pending(PortId(1)), 8);
    let s = sw.stats(PortId(1)).unwrap();
    assert_eq!((s.queued, s.dropped_full), (8, 992));
    // The queue keeps the oldest frames; after draining, new frames get through again.
    assert_eq!(
        sw.recv(PortId(1)).unwrap(),
        frame(Mac::BROADCAST, A, &0u32.to_le_bytes())
    );
    assert_eq!(sw.peek_len(PortId(1)), Some(18));
    while sw.recv(PortId(1)).is_some() {}
    assert!(sw
        .send(PortId(0), &frame(B, A, b"x"))
        .unwrap()
        .contains(PortId(1)));
    assert_eq!(sw.stats(PortId(1)).unwrap().received, 8);
}

#[test]
fn a_full_table_forgets_the_least_recently_seen_address() {
    let mut sw = Switch::new(SwitchConfig {
        table_entries: 2,
        ..SwitchConfig::with_ports(3)
    })
    .unwrap();
    sw.send(PortId(0), &frame(Mac::BROADCAST, A, b"")).unwrap();
    sw.send(PortId(1), &frame(Mac::BROADCAST, B, b"")).unwrap();
    sw.send(PortId(0), &frame(Mac::BROADCAST, A, b"")).unwrap(); // A seen again
    sw.send(PortId(2), &frame(Mac::BROADCAST, C, b"")).unwrap(); // B goes
    assert_eq!(sw.table_len(), 2);
    assert_eq!(sw.lookup(A), Some(PortId(0)));
    assert_eq!(sw.lookup(B), None);
    assert_eq!(sw.lookup(C), Some(PortId(2)));
}

#[test]
fn a_detached_port_loses_its_queue_and_addresses_and_the_others_keep_working() {
    let mut sw = switch(3);
    sw.send(PortId(1), &frame(Mac::BROADCAST, B, b"")).unwrap();
    sw.send(PortId(0), &frame(Mac::BROADCAST, A, b"")).unwrap();
    assert_eq!(sw.pending(PortId(1)), 1);
    sw.detach(PortId(1));
    assert!(!sw.is_attached(PortId(1)));
    assert_eq!(sw.pending(PortId(1)), 0);
    assert_eq!(sw.lookup(B), None);
    assert_eq!(
        sw.send(PortId(1), &frame(A, B, b"")),
        Err(SendError::Detached(PortId(1)))
    );
    // B is unknown now: a frame for it floods to the attached ports only.
    let to = sw.send(PortId(0), &frame(B, A, b"")).unwrap();
    assert_eq!(to.iter().collect::<Vec<_>>(), vec![PortId(2)]);
    sw.attach(PortId(1));
    let to = sw.send(PortId(0), &frame(B, A, b"")).unwrap();
    assert!(to.contains(PortId(1)));
}

#[test]
fn mac_display_and_group_bit() {
    assert_eq!(std::format!("{A}"), "52:54:00:00:00:0a");
    assert!(Mac::BROADCAST.is_group());
    assert!(!A.is_group());
}

#[test]
fn learning_the_source_in_a_full_table_does_not_misroute_the_frame() {
    // Found by the vswitch fuzz target: with one entry, learning A evicted B before B
    // was looked up, so a frame for a known port was flooded.
    let mut sw = Switch::new(SwitchConfig {
        table_entries: 1,
        ..SwitchConfig::with_ports(3)
    })
    .unwrap();
    sw.send(PortId(1), &frame(Mac::BROADCAST, B, b"")).unwrap();
    let to = sw.send(PortId(0), &frame(B, A, b"")).unwrap();
    assert_eq!(to.iter().collect::<Vec<_>>(), vec![PortId(1)]);
    assert_eq!(sw.lookup(A), Some(PortId(0)));
}
