//! The store's layout is versioned: a database written before the versioning
//! opens with nothing lost, and a row that cannot be read is kept, copied aside
//! and reported, never skipped silently.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rusqlite::Connection;
use watchtrain_protocol::*;
use watchtrain_relay::store::Store;
use watchtrain_relay::Config;

/// The snapshot frames of `tests/fixtures/store-v0.sqlite3`, as its writer (the
/// store before versioning) read them back: training 1 completed 50 epochs of 3
/// metrics (decimated history); training 2 runs, with a NaN, in a valid phase.
const FIXTURE_SNAPSHOTS: [(u32, &str); 2] = [
    (1, "010100080d70657473207265736e65743334030a747261696e5f6c6f73730a76616c69645f6c6f73730861636375726163793203000000005c0000024b0000803fcdcc8c3f0000003fabaaaa3e9324c93e5555553fcdcc4c3e9dde743e6666663f2549123e0100303edbb66d3f398ee33da95d093e1cc7713f8c2eba3dae47e13d175d743fd9899d3d4feabe3d6227763f8988883da6a5a53d7777773ff1f0703d2549923d7878783f3694573d0dfa823d5e43793f310c433d08236d3d9ee7793f4316323d8b9d583d4e6f7a3f0ad7233de45c473d48e17a3f26b4173ddfa7383d5f427b3fcb3d0d3d30f82b3d12967b3f0821043d0fea203df8de7b3f103ef83cd431173d081f7c3fa10eea3c11950e3dc5577c3fc967dd3cf1e5063d618a7c3f210dd23c0000003dcbb77c3f0ccec73cc38bf33cc8e07c3ffa82be3c583fe83cf4057d3f610bb63c64f3dd3cd2277d3f414cae3c4087d43ccf467d3f052fa73c92dfcb3c44637d3f0131030ad7a33c0dcec73ca4707d3f03310ad7a33c310dcec73c31a4707d3fa9d05b3233"),
    (2, "010200080bc39c62756e6720f09f9a8002046c6f7373026c720a010002010000030901043333333f6f12833a0000c07f6f12033a0101020000c07f6f12033a02003333333f006f12833ad00f0203"),
];

/// The same states as the relay holds them after the format version 2: goals
/// from the names (`03 01 01 02`: minimize, minimize, maximize; `02 01 00`:
/// `loss` minimized, `lr` none), and no best for `lr` (`00 0000c07f`: NaN).
const FIXTURE_SNAPSHOTS_V2: [(u32, &str); 2] = [
    (1, "020100080d70657473207265736e65743334030a747261696e5f6c6f73730a76616c69645f6c6f73730861636375726163793203000000005c0000024b0000803fcdcc8c3f0000003fabaaaa3e9324c93e5555553fcdcc4c3e9dde743e6666663f2549123e0100303edbb66d3f398ee33da95d093e1cc7713f8c2eba3dae47e13d175d743fd9899d3d4feabe3d6227763f8988883da6a5a53d7777773ff1f0703d2549923d7878783f3694573d0dfa823d5e43793f310c433d08236d3d9ee7793f4316323d8b9d583d4e6f7a3f0ad7233de45c473d48e17a3f26b4173ddfa7383d5f427b3fcb3d0d3d30f82b3d12967b3f0821043d0fea203df8de7b3f103ef83cd431173d081f7c3fa10eea3c11950e3dc5577c3fc967dd3cf1e5063d618a7c3f210dd23c0000003dcbb77c3f0ccec73cc38bf33cc8e07c3ffa82be3c583fe83cf4057d3f610bb63c64f3dd3cd2277d3f414cae3c4087d43ccf467d3f052fa73c92dfcb3c44637d3f0131030ad7a33c0dcec73ca4707d3f03310ad7a33c310dcec73c31a4707d3fa9d05b323303010102"),
    (2, "020200080bc39c62756e6720f09f9a8002046c6f7373026c720a010002010000030901043333333f6f12833a0000c07f6f12033a0101020000c07f6f12033a02003333333f000000c07fd00f0203020100"),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A copy of the fixture database in a temporary directory.
fn fixture_copy(dir: &Path) -> PathBuf {
    let path = dir.join("relay.sqlite3");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v0.sqlite3");
    std::fs::copy(fixture, &path).unwrap();
    path
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// Opens the store, runs `f` on what it loaded, and closes it again.
async fn with_store<T>(
    path: &Path,
    f: impl AsyncFnOnce(&watchtrain_relay::store::Opened) -> T,
) -> T {
    let opened = Store::open(path, 10_000).unwrap();
    let out = f(&opened).await;
    let watchtrain_relay::store::Opened { store, thread, .. } = opened;
    drop(store);
    thread.join().unwrap();
    out
}

#[tokio::test]
async fn a_database_of_the_unversioned_layout_opens_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path());
    assert_eq!(user_version(&path), 0, "the fixture predates versioning");
    for _ in 0..2 {
        // The second open finds the layout already migrated.
        with_store(&path, async |opened| {
            assert!(opened.unreadable.is_empty());
            let mut got: Vec<(u32, String)> = opened
                .trainings
                .iter()
                .map(|t| (t.id, hex(&t.state.to_snapshot(t.id).to_bytes().unwrap())))
                .collect();
            got.sort();
            let want: Vec<(u32, String)> = FIXTURE_SNAPSHOTS_V2
                .iter()
                .map(|(id, h)| (*id, h.to_string()))
                .collect();
            assert_eq!(got, want);
            let first = opened.trainings.iter().find(|t| t.id == 1).unwrap();
            assert_eq!(first.run_key, "run-a");
            assert_eq!(first.state.status(), Status::Completed);
            let second = opened.trainings.iter().find(|t| t.id == 2).unwrap();
            assert_eq!(
                second.state.goals().as_slice(),
                [Goal::Minimize, Goal::None]
            );
            assert_eq!(second.state.best_of(1), None, "no best for a learning rate");
            assert_eq!(opened.store.history_page(1, None).await.unwrap().len(), 50);
            assert_eq!(opened.store.history_page(2, None).await.unwrap().len(), 2);
        })
        .await;
        assert_eq!(user_version(&path), 1);
    }
}

#[test]
fn the_fixture_frames_are_of_format_version_1() {
    for (_, h) in FIXTURE_SNAPSHOTS {
        assert!(h.starts_with("01"), "{h}");
    }
}

#[tokio::test]
async fn a_row_in_format_version_1_loads_with_goals_from_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path());
    with_store(&path, async |_| ()).await;
    // A snapshot frame as a relay before goals wrote it: version 1, metrics
    // `val_acc` and `lr`, a best for each, and no goals field.
    #[rustfmt::skip]
    let blob = [
        0x01, 0x02, 0x00, 0x08, // version 1, training 2, seq 0, Snapshot
        0x01, b'x', // name
        0x02, 0x07, b'v', b'a', b'l', b'_', b'a', b'c', b'c', 0x02, b'l', b'r', // metrics
        0x02, 0x01, 0x00, // epochs 2, running, reason ""
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // epoch, phase, train, valid
        0x01, // stride
        0x00, // history []
        0x01, 0x00, // latest_epoch Some(0)
        0x02, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0x3f, // latest [0.5, 1.0]
        0x02, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x00, 0x80, 0x3f, // best [(0, 0.5), (0, 1.0)]
        0x00, 0x01, 0x00, // elapsed_ms, timed_epochs, last_seq
        // (version 2 would have the goals here)
    ];
    set_state(&path, "state = ?1, state_format = 1", &blob);
    with_store(&path, async |opened| {
        assert!(opened.unreadable.is_empty());
        let t = opened.trainings.iter().find(|t| t.id == 2).unwrap();
        let s = &t.state;
        assert_eq!(s.metrics().len(), 2);
        assert_eq!(s.goals().as_slice(), [Goal::Maximize, Goal::None]);
        assert_eq!(
            s.best_of(0),
            Some(Best {
                epoch: 0,
                value: 0.5
            })
        );
        assert_eq!(s.best_of(1), None);
        assert_eq!(s.latest().as_slice(), [0.5, 1.0]);
    })
    .await;
}

#[tokio::test]
async fn an_unreadable_row_is_reported_kept_and_its_id_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path());
    with_store(&path, async |_| ()).await;
    let broken = [1u8, 2, 0, 8, 0xff];
    set_state(&path, "state = ?1", &broken);
    with_store(&path, async |opened| {
        assert_eq!(opened.unreadable, vec![2]);
        assert_eq!(
            opened.trainings.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![1]
        );
    })
    .await;
    let conn = Connection::open(&path).unwrap();
    let (state, error): (Vec<u8>, String) = conn
        .query_row(
            "SELECT state, error FROM unreadable WHERE id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, broken, "the unreadable state is copied aside");
    assert!(error.contains("decode"), "{error}");
    let kept: i64 = conn
        .query_row(
            "SELECT count(*) FROM stats WHERE training_id = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 2, "its stats stay");
    drop(conn);

    // A relay on this database gives a new training a fresh id, not the unreadable one.
    let relay = Relay::start(Config {
        db: path.clone(),
        ..Config::in_memory()
    })
    .await;
    let mut producer = connect(&relay.ws("/v1/produce")).await;
    let (id, _) = register(&mut producer, 0, "new", "", &["loss"], 3).await;
    assert_eq!(id, 3);
    drop(producer);
    relay.stop().await;
}

#[tokio::test]
async fn a_database_of_a_newer_layout_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let error = Store::open(&path, 10_000)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("newer relay"), "{error}");
}

/// Overwrites training 2's row of the fixture: `set` is an SQL `SET` list with `?1` for `blob`.
fn set_state(path: &std::path::Path, set: &str, blob: &[u8]) {
    Connection::open(path)
        .unwrap()
        .execute(&format!("UPDATE trainings SET {set} WHERE id = 2"), [blob])
        .unwrap();
}
