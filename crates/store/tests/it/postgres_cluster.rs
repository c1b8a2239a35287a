//! The local PostgreSQL cluster that the PostgreSQL store's tests and benchmark run against:
//! Debian's PostgreSQL, made with `initdb` and started with `pg_ctl` on a free port.

use twinledger_store::postgres::{LocalCluster, ROLE};

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_starts_takes_its_password_and_refuses_another() {
    let cluster = LocalCluster::start().expect("the cluster starts");
    let client = connect(&cluster.url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("connects: {e}\n{}", cluster.log()));
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_user::text, \
             current_setting('listen_addresses')",
            &[],
        )
        .await
        .expect("query");
    let version: i32 = row.get(0);
    assert!(version >= 150_000, "PostgreSQL 15 or newer, got {version}");
    assert_eq!(row.get::<_, String>(1), ROLE);
    assert_eq!(row.get::<_, String>(2), "127.0.0.1");

    // Password authentication is on: a wrong password is refused.
    let wrong = format!(
        "postgres://{ROLE}:not-the-password@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let err = connect(&wrong)
        .await
        .expect_err("a wrong password is refused");
    let text = format!("{err:?}");
    assert!(
        text.contains("password authentication failed"),
        "refused for another reason: {text}"
    );

    // Stopped with the value: nothing listens on its port afterwards.
    let port = cluster.port();
    drop(cluster);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the cluster still listens after it was dropped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_settings_are_passed_on() {
    let cluster =
        LocalCluster::start_with(&["synchronous_commit=remote_write", "max_connections=37"])
            .expect("the cluster starts");
    let client = connect(&cluster.url("postgres")).await.expect("connects");
    let row = client
        .query_one(
            "SELECT current_setting('synchronous_commit'), current_setting('max_connections')",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "remote_write");
    assert_eq!(row.get::<_, String>(1), "37");
}
