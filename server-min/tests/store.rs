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
            let want: Vec<(u32, String)> = FIXTURE_SNAPSHOTS
                .iter()
                .map(|(id, h)| (*id, h.to_string()))
                .collect();
            assert_eq!(got, want);
            let first = opened.trainings.iter().find(|t| t.id == 1).unwrap();
            assert_eq!(first.run_key, "run-a");
            assert_eq!(first.state.status(), Status::Completed);
            assert_eq!(opened.store.history_page(1, None).await.unwrap().len(), 50);
            assert_eq!(opened.store.history_page(2, None).await.unwrap().len(), 2);
        })
        .await;
        assert_eq!(user_version(&path), 1);
    }
}

#[tokio::test]
async fn an_unreadable_row_is_reported_kept_and_its_id_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture_copy(dir.path());
    with_store(&path, async |_| ()).await;
    let broken = [1u8, 2, 0, 8, 0xff];
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE trainings SET state = ?1 WHERE id = 2",
            [&broken[..]],
        )
        .unwrap();
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
