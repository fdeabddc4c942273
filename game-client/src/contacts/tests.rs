use super::*;
use duet_shared::trust::DeviceKey;

fn key(seed: u8) -> PublicKey {
    DeviceKey::from_seed([seed; 32]).public()
}

#[test]
fn a_key_is_new_then_known_and_a_new_key_under_a_known_name_is_not_the_one_met() {
    let mut contacts = Contacts::default();
    assert_eq!(contacts.meet(key(1), "Bob", 1_000), Standing::New);
    assert_eq!(
        contacts.meet(key(1), "Bobby", 2_000),
        Standing::Known {
            since_ms: 1_000,
            verified: false
        },
        "a known key is known whatever name it gives"
    );
    assert_eq!(contacts.get(&key(1)).unwrap().name, "Bobby");
    assert_eq!(contacts.get(&key(1)).unwrap().last_seen_ms, 2_000);
    assert_eq!(
        contacts.standing(&key(2), "BOBBY"),
        Standing::NotTheOneMet {
            known_since_ms: 1_000,
            verified: false
        }
    );
    assert_eq!(contacts.standing(&key(2), "Carol"), Standing::New);
    assert!(contacts.verify(&key(1)));
    assert!(!contacts.verify(&key(3)), "only contacts can be verified");
    assert_eq!(
        contacts.standing(&key(2), "Bobby"),
        Standing::NotTheOneMet {
            known_since_ms: 1_000,
            verified: true
        }
    );
}

#[test]
fn the_list_is_bounded_and_keeps_the_most_recently_met() {
    let mut contacts = Contacts::default();
    for i in 0..(MAX_CONTACTS as u64 + 20) {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&i.to_le_bytes());
        contacts.meet(DeviceKey::from_seed(seed).public(), "x", i);
    }
    assert_eq!(contacts.0.len(), MAX_CONTACTS);
    assert_eq!(contacts.0[0].last_seen_ms, MAX_CONTACTS as u64 + 19);
    assert!(contacts.0.iter().all(|c| c.last_seen_ms >= 20));
}

fn app(dir: &std::path::Path) -> App {
    let mut app = crate::net::testing::offline_app(Some(dir));
    app.add_message::<IdentityEvent>()
        .init_resource::<PeerProfile>()
        .add_plugins(ContactsPlugin);
    app.update();
    app
}

fn hello(app: &mut App, key: PublicKey, name: &str) -> Vec<ContactEvent> {
    app.world_mut().write_message(IdentityEvent::PeerHello {
        identity: key.uuid(),
        key,
        name: name.into(),
        safety_code: "123 456".into(),
    });
    app.world_mut().resource_mut::<PeerProfile>().hello = Some(crate::identity::PeerHello {
        key,
        name: name.into(),
        safety_code: "123 456".into(),
    });
    app.update();
    crate::net::testing::drain::<ContactEvent>(app)
}

#[test]
fn verified_survives_a_restart_and_a_verified_name_with_another_key_is_refused() {
    let dir = duet_tests::temp_dir("contacts").unwrap();
    {
        let mut app = app(&dir);
        let met = hello(&mut app, key(1), "Bob");
        assert!(matches!(
            met[..],
            [ContactEvent::Met {
                standing: Standing::New,
                ..
            }]
        ));
        app.world_mut().write_message(ContactAction::VerifyPeer);
        app.update();
        assert_eq!(
            crate::net::testing::drain::<ContactEvent>(&mut app),
            vec![ContactEvent::Verified { key: key(1) }]
        );
    }
    let mut app = app(&dir);
    let contact = app
        .world()
        .resource::<Contacts>()
        .get(&key(1))
        .cloned()
        .unwrap();
    assert!(contact.verified, "verified after a restart");
    // Someone else calling themselves Bob: refused, and nothing recorded for them.
    let met = hello(&mut app, key(2), "Bob");
    assert_eq!(met, vec![ContactEvent::Refused { name: "Bob".into() }]);
    assert_eq!(crate::net::testing::drain::<Disconnect>(&mut app).len(), 1);
    assert!(app.world().resource::<Contacts>().get(&key(2)).is_none());
    // The person decides: forgets the old Bob; the newcomer is a new unknown user.
    app.world_mut()
        .write_message(ContactAction::Forget { key: key(1) });
    app.update();
    let met = hello(&mut app, key(2), "Bob");
    assert!(matches!(
        met[..],
        [ContactEvent::Met {
            standing: Standing::New,
            ..
        }]
    ));
}

#[test]
fn a_contact_can_get_a_name_of_ones_own() {
    let dir = duet_tests::temp_dir("contacts-rename").unwrap();
    let mut app = app(&dir);
    hello(&mut app, key(1), "Bob");
    app.world_mut().write_message(ContactAction::Rename {
        key: key(1),
        name: "Bob from work".into(),
    });
    app.update();
    let contacts = app.world().resource::<Contacts>();
    assert_eq!(contacts.get(&key(1)).unwrap().shown_name(), "Bob from work");
    // Someone new calling themselves by that name is not the one met either.
    assert!(matches!(
        contacts.standing(&key(3), "bob from work"),
        Standing::NotTheOneMet { .. }
    ));
}
