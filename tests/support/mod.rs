//! Test support: real servers started by the tests themselves. A throwaway PostgreSQL cluster
//! (the embedded PostgreSQL 18 with pgvector, into which `cargo pgrx install` put the
//! extension), a real pgbouncer in front of it, tokio-postgres clients, and app-side token
//! signing with the `jsonwebtoken` crate, the way an application server would sign.

#![allow(dead_code)]

/// `trials![f, g, ...]`: one libtest-mimic trial per async test function, named after it.
macro_rules! trials {
    ($($name:ident),+ $(,)?) => {
        vec![$(libtest_mimic::Trial::test(stringify!($name), || {
            crate::support::block_on($name());
            Ok(())
        })),+]
    };
}

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use serde_json::{json, Value};
pub use tokio_postgres::Client;

/// The HMAC secret the fixture registers as key `app-2026`; tests sign with it like an app.
pub const APP_KID: &str = "app-2026";
pub const APP_SECRET: &[u8] = b"integration-test-secret-0123456789abcdef";

/// What every suite starts from: the extension, the app key, and the lookalike tenants'
/// principals (tests/fixtures/lookalike_tenants.sql, shared by every test layer).
pub const BASE_FIXTURE: &str = concat!(
    "CREATE EXTENSION agent_boundary CASCADE;\n",
    "SELECT boundary.add_signing_key('app-2026', 'HS256', convert_to('integration-test-secret-0123456789abcdef', 'UTF8'));\n",
    include_str!("../fixtures/lookalike_tenants.sql"),
);

static SHARED: OnceLock<Cluster> = OnceLock::new();

/// Starts the suite's shared cluster and loads `BASE_FIXTURE` plus `fixture` into it.
pub fn start_shared_cluster(name: &str, fixture: &str) {
    start_shared_cluster_with(name, &[], fixture);
}

/// [`start_shared_cluster`] with `extra_conf` lines in postgresql.conf.
pub fn start_shared_cluster_with(name: &str, extra_conf: &[&str], fixture: &str) {
    let cluster = Cluster::start(name, extra_conf);
    block_on(async {
        let admin = cluster.connect("postgres").await;
        admin.batch_execute(BASE_FIXTURE).await.expect("base fixture");
        admin.batch_execute(fixture).await.expect("fixture");
    });
    assert!(SHARED.set(cluster).is_ok(), "started twice");
}

/// The suite's shared cluster (see [`start_shared_cluster`]).
pub fn cluster() -> &'static Cluster {
    SHARED.get().expect("main starts the shared cluster first")
}

/// Stops the shared cluster, if one was started.
pub fn stop_shared_cluster() {
    if let Some(cluster) = SHARED.get() {
        cluster.stop();
    }
}

/// Tokens for the lookalike principals: alice at Northstar Dental (admin) and Design (member),
/// minted by trusted code that lets these requests start jobs.
pub fn dental_alice() -> String {
    app_token("northstar-dental", "support", "alice", "admin", json!({"allow_jobs": true}))
}

pub fn design_alice() -> String {
    app_token("northstar-design", "support", "alice", "member", json!({"allow_jobs": true}))
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    })
}

fn is_root() -> bool {
    // SAFETY: trivial libc call.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A command run as the `postgres` system user when we are root (PostgreSQL refuses root).
fn as_server_user(program: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    // Backtraces in the server would end up in error DETAIL lines.
    cmd.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    cmd
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the embedded PostgreSQL's binaries are: $AGENT_BOUNDARY_PGBIN, or the project venv.
pub fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AGENT_BOUNDARY_PGBIN") {
        return PathBuf::from(dir);
    }
    let lib = manifest_dir().join(".venv/lib");
    for entry in std::fs::read_dir(&lib).expect("no .venv: run scripts/test.sh, which sets it up") {
        let candidate = entry.unwrap().path().join("site-packages/pgserver/pginstall/bin");
        if candidate.join("pg_ctl").exists() {
            return candidate;
        }
    }
    panic!("embedded PostgreSQL not found under {}; run scripts/test.sh", lib.display());
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A throwaway PostgreSQL cluster, stopped and deleted on drop.
pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
}

impl Cluster {
    /// Starts a cluster; `extra_conf` lines are appended to postgresql.conf.
    pub fn start(name: &str, extra_conf: &[&str]) -> Cluster {
        Cluster::start_limited(name, extra_conf, None)
    }

    /// [`Cluster::start`] with the server's address space limited to `address_space_kib`
    /// (`ulimit -v`, inherited by every backend), the way memory-limited servers run.
    pub fn start_limited(name: &str, extra_conf: &[&str], address_space_kib: Option<u64>) -> Cluster {
        Cluster::launch(pg_bin_dir(), name, extra_conf, address_space_kib)
    }

    /// [`Cluster::start`] with the PostgreSQL whose binaries are in `bin` (another installation,
    /// e.g. one holding an older build of the extension).
    pub fn start_from(bin: &Path, name: &str, extra_conf: &[&str]) -> Cluster {
        Cluster::launch(bin.to_path_buf(), name, extra_conf, None)
    }

    fn launch(bin: PathBuf, name: &str, extra_conf: &[&str], address_space_kib: Option<u64>) -> Cluster {
        let dir = manifest_dir().join("target/it-clusters").join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres"]).arg(&dir), "chown cluster dir");
        }
        let data = dir.join("data");
        run(
            as_server_user(&bin.join("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]),
            "initdb",
        );
        let port = free_port();
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             log_min_messages = warning\nmax_connections = 50\n",
            dir.display()
        );
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = data.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).unwrap();
        let mut start = match address_space_kib {
            None => as_server_user(&bin.join("pg_ctl")),
            Some(kib) => {
                let mut sh = as_server_user(Path::new("/bin/sh"));
                sh.args(["-c", &format!("ulimit -v {kib} && exec \"$0\" \"$@\"")]).arg(bin.join("pg_ctl"));
                sh
            }
        };
        run(
            start
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        Cluster { port, dir, bin }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn restart(&self) {
        run(
            as_server_user(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", "60", "-m", "fast", "restart"]),
            "pg_ctl restart",
        );
    }

    pub fn config(&self, user: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(self.port).user(user).dbname("postgres");
        config
    }

    pub async fn connect(&self, user: &str) -> Client {
        self.connect_to(user, "postgres").await
    }

    /// Connects as `user` to `database` of this cluster.
    pub async fn connect_to(&self, user: &str, database: &str) -> Client {
        let mut config = self.config(user);
        config.dbname(database);
        connect_with(config).await.unwrap_or_else(|e| panic!("connect as {user} to {database}: {e}"))
    }
}

impl Cluster {
    /// Stops the server (immediately) and deletes its directory unless a test failed.
    pub fn stop(&self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

pub async fn connect_with(config: tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    Ok(connect_with_notices(config).await?.0)
}

/// Notices and warnings the server sent, as "SEVERITY: message".
pub type Notices = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Connects and records every notice/warning the server sends on this connection.
pub async fn connect_with_notices(
    config: tokio_postgres::Config,
) -> Result<(Client, Notices), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let notices = Notices::default();
    let sink = notices.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message {
                sink.lock().unwrap().push(format!("{}: {}", notice.severity(), notice.message()));
            }
        }
    });
    Ok((client, notices))
}

/// A real pgbouncer in front of a cluster, killed on drop.
pub struct Pgbouncer {
    pub port: u16,
    child: Child,
}

impl Pgbouncer {
    pub fn start(cluster: &Cluster, pool_mode: &str, pool_size: u32, users: &[&str]) -> Pgbouncer {
        let port = free_port();
        let dir = cluster.dir.join(format!("pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let userlist: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        std::fs::write(dir.join("userlist.txt"), userlist).unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\npostgres = host=127.0.0.1 port={} dbname=postgres\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
                 pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmin_pool_size = 0\n\
                 max_client_conn = 100\nserver_reset_query =\nignore_startup_parameters = extra_float_digits,options\n\
                 server_login_retry = 1\n\
                 logfile = {}\n",
                cluster.port,
                dir.join("userlist.txt").display(),
                dir.join("pgbouncer.log").display()
            ),
        )
        .unwrap();
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres"]).arg(&dir), "chown pgbouncer dir");
        }
        let child = as_server_user(Path::new("/usr/sbin/pgbouncer"))
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer is not installed (Debian package pgbouncer); run scripts/test.sh");
        wait_for_port(port, "pgbouncer");
        Pgbouncer { port, child }
    }

    pub async fn connect(&self, user: &str) -> Client {
        let mut config = tokio_postgres::Config::new();
        config.host("127.0.0.1").port(self.port).user(user).dbname("postgres");
        connect_with(config).await.unwrap_or_else(|e| panic!("connect to pgbouncer as {user}: {e}"))
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        // runuser forwards SIGTERM to pgbouncer.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Signs `claims` exactly as given, with the app key, as an application server would.
pub fn sign_raw(claims: &Value, kid: &str, secret: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

/// A boundary token for (tenant, workspace, user, role), valid for five minutes; `extra`
/// claims are merged in (and may override the defaults).
pub fn app_token(tenant: &str, workspace: &str, user: &str, role: &str, extra: Value) -> String {
    let mut claims = json!({
        "tenant_id": tenant, "workspace_id": workspace, "user_id": user, "role": role,
        "iat": now(), "exp": now() + 300, "aud": "agent_boundary",
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            claims[k] = v;
        }
    }
    sign_raw(&claims, APP_KID, APP_SECRET)
}

/// Asserts that `result` failed with this SQLSTATE and exactly this message.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tokio_postgres::Error>,
    sqlstate: &str,
    message: &str,
) -> tokio_postgres::error::DbError {
    let err = result.expect_err("expected the server to refuse");
    let db = err.as_db_error().unwrap_or_else(|| panic!("not a server error: {err}")).clone();
    assert_eq!((db.code().code(), db.message()), (sqlstate, message), "detail: {:?}", db.detail());
    db
}

/// First column of every row of a simple-protocol query, as text.
pub async fn column(client: &Client, sql: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .collect())
}

/// `SELECT boundary.enter($1)` with the token as a bound parameter (never spliced into SQL).
pub async fn enter(client: &Client, token: &str) -> Result<Value, tokio_postgres::Error> {
    let row = client
        .query_typed_one("SELECT boundary.enter($1)::text", &[(&token, tokio_postgres::types::Type::TEXT)])
        .await?;
    Ok(serde_json::from_str(row.get::<_, &str>(0)).unwrap())
}

/// Runs a closure-shaped async test body on the shared runtime.
pub fn block_on<F: std::future::Future<Output = ()>>(future: F) {
    runtime().block_on(future)
}

/// splitmix64 with Box-Muller normals: deterministic data for tests and benchmarks.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform().max(1e-12), self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}
