//! TLS to PostgreSQL (`sslmode` / `sslrootcert`) against the test server, which
//! scripts/services/10-postgres.sh starts with `ssl=on` and a certificate for 127.0.0.1 and
//! localhost signed by the CA at `WA_TEST_PG_CA` (`WA_TEST_PG_OTHER_CA` signed nothing).

use std::error::Error as _;

use wa_store::postgres_tls::{PgConfigError, PgConnectConfig, TlsConnectError};
use wa_store::{DeviceId, Error, ProtocolAddress, SessionStore, Store, StoreOptions};

use crate::harness;

const CA_VAR: &str = "WA_TEST_PG_CA";
const OTHER_CA_VAR: &str = "WA_TEST_PG_OTHER_CA";

/// A fresh database, its port and the two CA files; `None` only with the explicit opt-out.
struct Server {
    /// `postgres://postgres@127.0.0.1:PORT/DB` (no query).
    url: String,
    port: u16,
    db: String,
    ca: String,
    other_ca: String,
}

async fn server() -> Option<Server> {
    let admin = harness::server_url(harness::PG_VAR)?;
    let ca = harness::server_url(CA_VAR)?;
    let other_ca = harness::server_url(OTHER_CA_VAR)?;
    let url = harness::fresh_pg_database(&admin).await;
    let cfg: tokio_postgres::Config = url.parse().expect("test URL");
    let port = cfg.get_ports().first().copied().expect("test URL has a port");
    let db = cfg.get_dbname().expect("test URL has a database").to_owned();
    Some(Server { url, port, db, ca, other_ca })
}

/// Percent-encodes a path for a URL query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether the session of a fresh connection made with `url` is encrypted (pg_stat_ssl).
async fn is_tls(url: &str) -> Result<bool, tokio_postgres::Error> {
    let settings = PgConnectConfig::parse(url).expect("settings");
    let (client, conn) = settings.connect().await?;
    tokio::spawn(conn);
    let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?;
    Ok(row.get(0))
}

/// The certificate error inside a failed connect, if that is why it failed.
fn certificate_error(e: &tokio_postgres::Error) -> Option<&rustls::CertificateError> {
    match e.source()?.downcast_ref::<TlsConnectError>()? {
        TlsConnectError::Certificate(c) => Some(c),
        _ => None,
    }
}

fn assert_certificate_refused(
    r: Result<bool, tokio_postgres::Error>,
    what: &str,
) -> rustls::CertificateError {
    let e = match r {
        Err(e) => e,
        Ok(tls) => panic!("{what}: connected (tls = {tls}) although the certificate must be refused"),
    };
    let c = certificate_error(&e).unwrap_or_else(|| panic!("{what}: not a certificate error: {e:?}"));
    c.clone()
}

#[tokio::test]
async fn verify_full_is_tls_and_a_store_round_trips_over_it() {
    let Some(s) = server().await else { return };
    let url = format!("{}?sslmode=verify-full&sslrootcert={}", s.url, enc(&s.ca));
    assert!(is_tls(&url).await.expect("verify-full connect"), "verify-full session is not TLS");

    let store = Store::open_postgres(&url, StoreOptions::default()).await.expect("open over TLS");
    let dev = store.device(&DeviceId::new("tls-device").expect("device id"));
    let peer = ProtocolAddress::new("123456@lid", 1);
    dev.put_sessions(&[(peer.clone(), b"ratchet over TLS".to_vec())]).await.expect("put");
    let got = dev.get_sessions(std::slice::from_ref(&peer)).await.expect("get");
    assert_eq!(got[0].as_deref(), Some(&b"ratchet over TLS"[..]));

    // Every connection the store's pool holds to this database is encrypted.
    let (admin, conn) = tokio_postgres::connect(&s.url, tokio_postgres::NoTls).await.expect("admin");
    tokio::spawn(conn);
    let row = admin
        .query_one(
            "SELECT count(*), COALESCE(bool_and(s.ssl), false) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
            &[&s.db],
        )
        .await
        .expect("pg_stat_ssl");
    let (n, all_tls): (i64, bool) = (row.get(0), row.get(1));
    assert!(n >= 1 && all_tls, "store connections: {n}, all TLS: {all_tls}");
    drop(store);
}

#[tokio::test]
async fn disable_is_plain_and_the_default_prefers_tls() {
    let Some(s) = server().await else { return };
    assert!(!is_tls(&format!("{}?sslmode=disable", s.url)).await.expect("disable"), "disable used TLS");
    assert!(is_tls(&s.url).await.expect("default"), "default sslmode=prefer did not use TLS");
    assert!(is_tls(&format!("{}?sslmode=require", s.url)).await.expect("require"), "require without TLS");
    // Keyword form, same server.
    let kw = format!("host=127.0.0.1 port={} user=postgres dbname={} sslmode=disable", s.port, s.db);
    assert!(!is_tls(&kw).await.expect("keyword disable"));
}

#[tokio::test]
async fn an_unrelated_ca_is_a_certificate_error_in_every_verifying_mode() {
    let Some(s) = server().await else { return };
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let url = format!("{}?sslmode={mode}&sslrootcert={}", s.url, enc(&s.other_ca));
        let c = assert_certificate_refused(is_tls(&url).await, mode);
        assert!(matches!(c, rustls::CertificateError::UnknownIssuer), "{mode}: {c:?}");
    }
    // Through the store: a typed error whose message says why.
    let url = format!("{}?sslmode=verify-full&sslrootcert={}", s.url, enc(&s.other_ca));
    match Store::open_postgres(&url, StoreOptions::default()).await {
        Err(Error::Postgres(e)) => {
            assert!(certificate_error(&e).is_some(), "{e:?}");
            let msg = Error::Postgres(e).to_string();
            assert!(msg.contains("certificate"), "{msg}");
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
    // The default roots (webpki-roots) do not trust a private CA either.
    let c = assert_certificate_refused(is_tls(&format!("{}?sslmode=verify-ca", s.url)).await, "webpki roots");
    assert!(matches!(c, rustls::CertificateError::UnknownIssuer), "{c:?}");
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let Some(s) = server().await else { return };
    // `host` is the name checked; `hostaddr` is where the socket goes (the test server).
    let at = |host: &str, mode: &str| {
        format!(
            "postgres://postgres@{host}:{}/{}?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}",
            s.port,
            s.db,
            enc(&s.ca)
        )
    };
    let c = assert_certificate_refused(is_tls(&at("db.wrong.invalid", "verify-full")).await, "wrong name");
    assert!(
        matches!(
            c,
            rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. }
        ),
        "{c:?}"
    );
    assert!(is_tls(&at("db.wrong.invalid", "verify-ca")).await.expect("verify-ca ignores the name"));
    assert!(is_tls(&at("localhost", "verify-full")).await.expect("localhost is in the certificate"));
}

#[tokio::test]
async fn bad_settings_are_typed_errors_before_any_connection() {
    // No server needed: these fail while parsing. Port 1 on loopback: nothing listens there.
    let base = "postgres://postgres:s3cret@127.0.0.1:1/x";
    for (query, check) in [
        ("sslmode=verify", (|e| matches!(e, PgConfigError::UnknownSslMode(_))) as fn(&PgConfigError) -> bool),
        ("sslmode=verify-full&sslrootcert=/nonexistent/wa-ca.pem", |e| {
            matches!(e, PgConfigError::RootCertRead { .. })
        }),
        ("sslmode=verify-full&sslrootcert=/dev/null", |e| matches!(e, PgConfigError::RootCertInvalid { .. })),
    ] {
        match Store::open_postgres(&format!("{base}?{query}"), StoreOptions::default()).await {
            Err(Error::PostgresConfig(e)) => {
                assert!(check(&e), "{query}: {e:?}");
                assert!(!e.to_string().contains("s3cret"), "{e}");
            }
            other => panic!("{query}: expected a settings error, got {other:?}"),
        }
    }
}
