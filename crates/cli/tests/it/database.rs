//! The ledger on PostgreSQL from the command line: a database that cannot be used is refused
//! with a message that says why, before anything starts, and the password is never shown.

use twinledger_chain::NodeKind;
use twinledger_testkit::free_port;

use crate::support::*;

/// Runs `serve` on `url` and expects it to refuse; returns what it printed on stderr.
fn refused(dir: &std::path::Path, url: &str, extra: &[&str]) -> String {
    let d = dir.to_str().expect("utf8");
    let mut args = vec![
        "--data-dir",
        d,
        "--database",
        url,
        "serve",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{url}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_cannot_serve_this_ledger_is_refused_before_anything_starts() {
    let pg = postgres().await;
    let good = pg.url("postgres");
    let dir = data_dir();

    let wrong = good.replace(pg.password(), "not-the-password");
    let err = refused(dir.path(), &wrong, &[]);
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password is not shown: {err}"
    );

    let closed = format!(
        "postgres://{}:secret@127.0.0.1:{}/postgres",
        twinledger_store::postgres::ROLE,
        free_port()
    );
    let err = refused(dir.path(), &closed, &[]);
    assert!(err.contains("cannot reach PostgreSQL at"), "{err}");
    assert!(!err.contains("secret"), "{err}");

    let err = refused(dir.path(), "postgres://host:notaport/db", &[]);
    assert!(err.contains("invalid PostgreSQL URL"), "{err}");

    // A ledger made on one chain is not served on another.
    let anvil = start_node(NodeKind::Anvil, 0, None).await;
    let other = start_node(NodeKind::Ganache, 0, None).await;
    let deploy = run(&[
        "deploy",
        "--rpc",
        anvil.url(),
        "--database",
        &good,
        "--data-dir",
        dir.path().to_str().expect("utf8"),
    ]);
    assert!(
        deploy.status.success(),
        "{}",
        String::from_utf8_lossy(&deploy.stderr)
    );
    {
        let app = external_app(dir.path(), &["--rpc", anvil.url(), "--database", &good]);
        let (status, _) = post_state(
            &app,
            "pump",
            "?wait=anchored",
            serde_json::json!({"rpm": 1}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let err = refused(dir.path(), &good, &["--rpc", other.url()]);
    assert!(
        err.contains("holds a ledger anchored on chain 31337, not on chain 1337"),
        "{err}"
    );
    assert!(!err.contains(pg.password()), "{err}");

    // Nor with another contract than the one its records are anchored with.
    let scratch = data_dir();
    let second = deploy_in(scratch.path(), anvil.url(), "log");
    let err = refused(
        dir.path(),
        &good,
        &["--rpc", anvil.url(), "--contract", &second],
    );
    assert!(
        err.contains("holds a ledger anchored with contract"),
        "{err}"
    );

    // A schema written by a newer twinledger is left alone.
    let db = {
        let (client, connection) = tokio_postgres::connect(&good, tokio_postgres::NoTls)
            .await
            .expect("connects");
        tokio::spawn(connection);
        client
    };
    db.batch_execute("UPDATE schema_version SET version = version + 1")
        .await
        .expect("schema from the future");
    let err = refused(dir.path(), &good, &["--rpc", anvil.url()]);
    assert!(err.contains("is newer than this program's"), "{err}");
}
