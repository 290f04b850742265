//! Postgres plumbing shared by the switch and the bank simulator: parse a URL,
//! create the database when it is missing, build a bounded pool, and apply the
//! embedded migrations (refinery) under an advisory lock so that several
//! processes starting at once do not race. Errors are one line that names what
//! failed and how to fix it.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::time::Duration;
use tokio_postgres::{Config, NoTls};

mod switch_migrations {
    refinery::embed_migrations!("migrations/switch");
}
mod bank_migrations {
    refinery::embed_migrations!("migrations/bank");
}

/// Which schema a database carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Switch,
    Bank,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "invalid database URL {url:?}: {reason} (expected e.g. postgres://postgres@127.0.0.1:5432/upi_switch)"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot reach PostgreSQL at {target}: {reason} (is it running? start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)"
    )]
    Unreachable { target: String, reason: String },
    #[error("cannot create database {db:?}: {reason}")]
    Create { db: String, reason: String },
    #[error("migrating database {db:?} failed: {reason}")]
    Migrate { db: String, reason: String },
    #[error("database error: {}", pg_message(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(String),
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::Pool(e.to_string())
    }
}

/// A parsed database URL.
#[derive(Clone, Debug)]
pub struct DbUrl {
    pub url: String,
    pub config: Config,
    pub dbname: String,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl DbUrl {
    pub fn parse(url: &str) -> Result<DbUrl, DbError> {
        let mut config: Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| DbError::BadUrl {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
        let dbname = config
            .get_dbname()
            .ok_or_else(|| DbError::BadUrl {
                url: url.to_string(),
                reason: "no database name in the URL".into(),
            })?
            .to_string();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(DbUrl {
            url: url.to_string(),
            config,
            dbname,
        })
    }

    fn target(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{}:{port}", hosts.join(","))
    }

    /// Opens one connection (its driver task is spawned on the current runtime).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, DbError> {
        connect_with(&self.config, &self.target()).await
    }
}

/// A connection that `LISTEN`s on `channel`: the notifications' payloads
/// arrive on the receiver (at most `buffer` waiting; beyond that they are
/// dropped and `overflowed` is set, so the listener reloads everything). The
/// receiver ends when the connection does.
pub struct Listener {
    pub client: tokio_postgres::Client,
    pub payloads: tokio::sync::mpsc::Receiver<String>,
    pub overflowed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DbUrl {
    pub async fn listen(&self, channel: &str, buffer: usize) -> Result<Listener, DbError> {
        use futures::StreamExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let unreachable = |e: tokio_postgres::Error| DbError::Unreachable {
            target: self.target(),
            reason: pg_message(&e),
        };
        let (client, mut connection) = self.config.connect(NoTls).await.map_err(unreachable)?;
        let (tx, payloads) = tokio::sync::mpsc::channel(buffer.max(1));
        let overflowed = std::sync::Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if tx.try_send(n.payload().to_string()).is_err() {
                            flag.store(true, Ordering::Release);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "listening connection closed");
                        break;
                    }
                }
            }
        });
        // The channel name is ours, not the user's: quoting keeps it one identifier.
        client
            .batch_execute(&format!("LISTEN \"{}\"", channel.replace('"', "")))
            .await
            .map_err(unreachable)?;
        Ok(Listener {
            client,
            payloads,
            overflowed,
        })
    }
}

/// The server's own message when there is one ("db error" alone says nothing).
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn connect_raw(config: &Config) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

async fn connect_with(config: &Config, target: &str) -> Result<tokio_postgres::Client, DbError> {
    connect_raw(config).await.map_err(|e| DbError::Unreachable {
        target: target.to_string(),
        reason: pg_message(&e),
    })
}

/// Creates the URL's database if it does not exist (connecting to `postgres`).
pub async fn ensure_database(db: &DbUrl) -> Result<(), DbError> {
    match connect_raw(&db.config).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) => {}
        Err(e) => {
            return Err(DbError::Unreachable {
                target: db.target(),
                reason: pg_message(&e),
            });
        }
    }
    let mut admin = db.config.clone();
    admin.dbname("postgres");
    let client = connect_with(&admin, &db.target()).await?;
    let quoted = format!("\"{}\"", db.dbname.replace('"', "\"\""));
    match client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
    {
        Ok(()) => {
            tracing::info!(db = %db.dbname, "created database");
            Ok(())
        }
        // Another process created it between our two steps (a race shows as either code).
        Err(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                || e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(())
        }
        Err(e) => Err(DbError::Create {
            db: db.dbname.clone(),
            reason: pg_message(&e),
        }),
    }
}

/// Applies the embedded migrations of `schema`, serialised by an advisory lock.
pub async fn migrate(db: &DbUrl, schema: Schema) -> Result<Vec<String>, DbError> {
    let mut client = db.connect().await?;
    let err = |e: &dyn std::fmt::Display| DbError::Migrate {
        db: db.dbname.clone(),
        reason: e.to_string(),
    };
    client
        .batch_execute("SELECT pg_advisory_lock(72150001)")
        .await
        .map_err(|e| err(&e))?;
    let report = match schema {
        Schema::Switch => {
            switch_migrations::migrations::runner()
                .set_migration_table_name("refinery_schema_history_switch")
                .run_async(&mut client)
                .await
        }
        Schema::Bank => {
            bank_migrations::migrations::runner()
                .set_migration_table_name("refinery_schema_history_bank")
                .run_async(&mut client)
                .await
        }
    };
    let unlock = client
        .batch_execute("SELECT pg_advisory_unlock(72150001)")
        .await;
    let report = report.map_err(|e| err(&e))?;
    unlock.map_err(|e| err(&e))?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// A bounded connection pool. Connections are opened lazily.
pub fn pool(db: &DbUrl, max_size: usize) -> Result<Pool, DbError> {
    let manager = Manager::from_config(
        db.config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// Everything a process needs before it serves: database, schema, pool.
/// The switch's pooled connections plan each execution ([`FRESH_PLANS`]).
pub async fn prepare(url: &str, schema: Schema, pool_size: usize) -> Result<Pool, DbError> {
    let mut db = DbUrl::parse(url)?;
    ensure_database(&db).await?;
    let applied = migrate(&db, schema).await?;
    if !applied.is_empty() {
        tracing::info!(db = %db.dbname, ?applied, "applied migrations");
    }
    if schema == Schema::Switch {
        db.config.options(FRESH_PLANS);
    }
    pool(&db, pool_size)
}

/// Session options of the switch's pooled connections: plan every
/// execution for the tables as they are now. A prepared statement otherwise
/// keeps the generic plan chosen when it was first planned, and Postgres
/// chose whole-table scans for tables that were tiny then (or had no
/// statistics: autovacuum off), which then scanned the table on every
/// execution as it grew — measured: 450 scans a second of
/// `merchant_payments` under the merchant bench. The statements of the pool
/// are few per payment and simple, so planning each costs little. (The
/// group-commit writer's two big statements are planned once, with seq scans
/// priced out instead: all their rows are found by key.)
pub const FRESH_PLANS: &str = "-c plan_cache_mode=force_custom_plan";
