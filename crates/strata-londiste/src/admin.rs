//! Node and table administration, step for step what Python Londiste's `create-*`,
//! `add-table` and `remove-table` do through the SQL functions, so a node set up by strata
//! is an ordinary Londiste node (and the other way round).

use crate::config::NodeConfig;
use crate::error::{LondisteError, Result};
use crate::exec_attrs::{ExecAttrs, LocalObjects};
use crate::names;
use crate::node::{self, checked, NodeInfo};
use crate::state::TableState;
use strata_pgclient::Client;

/// The kinds of node `create-*` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// The queue's origin: events are made here, it has no provider.
    Root,
    /// Keeps a full copy of the queue, so others can read from it (and it can take the root's role).
    Branch,
    /// Replays tables only, with no queue of its own: nothing can read from it.
    Leaf,
}

impl NodeType {
    /// The name pgq_node stores.
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeType::Root => "root",
            NodeType::Branch => "branch",
            NodeType::Leaf => "leaf",
        }
    }
}

/// Connects to a database and checks the londiste extension is there.
pub async fn connect(dsn_text: &str, what: &str) -> Result<Client> {
    let dsn = strata_pgclient::Dsn::parse(dsn_text)
        .map_err(|e| LondisteError::BadInput(format!("{what}: {e}")))?;
    let client = dsn.connect().await?;
    let has: bool = client
        .query_one(
            "select exists (select 1 from pg_catalog.pg_namespace where nspname = 'londiste')",
            &[],
        )
        .await
        .map_err(|e| LondisteError::sql("looking for the londiste schema", e))?
        .get(0);
    if !has {
        return Err(LondisteError::BadInput(format!(
            "{what} ({}) has no londiste schema: CREATE EXTENSION londiste CASCADE",
            dsn.describe()
        )));
    }
    Ok(client)
}

/// Connects to the node's own database.
pub async fn connect_local(cf: &NodeConfig) -> Result<Client> {
    connect(&cf.db, "db").await
}

async fn begin(client: &Client) -> Result<()> {
    client
        .batch_execute("begin")
        .await
        .map_err(|e| LondisteError::sql("begin", e))
}

async fn commit(client: &Client) -> Result<()> {
    client
        .batch_execute("commit")
        .await
        .map_err(|e| LondisteError::sql("commit", e))
}

/// Runs `work` in a transaction on `client`, rolling back when it fails.
macro_rules! in_tx {
    ($client:expr, $work:expr) => {{
        begin($client).await?;
        match $work.await {
            Ok(v) => {
                commit($client).await?;
                Ok(v)
            }
            Err(e) => {
                let _ = $client.batch_execute("rollback").await;
                Err(e)
            }
        }
    }};
}

/// Creates the node `name` of kind `kind`, reachable by others at `location`; branches
/// and leaves attach to the node at `provider` (a connection string).
pub async fn create_node(
    cf: &NodeConfig,
    kind: NodeType,
    name: &str,
    location: &str,
    provider: Option<&str>,
) -> Result<String> {
    create_node_at(cf, kind, name, location, provider, None).await
}

/// [`create_node`], with a subscriber's worker starting at tick `at` of its provider
/// instead of the provider's global watermark (a node seeded from a restore, see
/// [`crate::seed`]).
pub(crate) async fn create_node_at(
    cf: &NodeConfig,
    kind: NodeType,
    name: &str,
    location: &str,
    provider: Option<&str>,
    at: Option<i64>,
) -> Result<String> {
    strata_pgq::api::check_name("node", name)?;
    strata_pgclient::Dsn::parse(location)
        .map_err(|e| LondisteError::BadInput(format!("node location: {e}")))?;
    let db = connect_local(cf).await?;
    let queue = cf.queue_name.as_str();
    let info = node::node_info(&db, queue).await?;
    if info.exists() {
        return Err(LondisteError::BadInput(format!(
            "node {} already exists here for queue {queue} ({})",
            info.node_name.unwrap_or_default(),
            info.node_type.unwrap_or_default()
        )));
    }
    if kind == NodeType::Root {
        if provider.is_some() {
            return Err(LondisteError::BadInput("a root has no provider".into()));
        }
        return in_tx!(&db, async {
            node::register_location(&db, queue, name, location, false).await?;
            checked(
                &db,
                "creating the root node",
                "select ret_code, ret_note from pgq_node.create_node($1, 'root', $2, $3, null, null, null)",
                &[&queue, &name, &cf.job_name],
            )
            .await
        });
    }
    let provider = provider.ok_or_else(|| {
        LondisteError::BadInput(format!("create-{} needs --provider DSN", kind.as_str()))
    })?;
    let pdb = connect(provider, "--provider").await?;
    let pinfo = node::node_info(&pdb, queue).await?;
    let provider_name = pinfo.node_name.clone().ok_or_else(|| {
        LondisteError::BadInput(format!("the provider has no node for queue {queue}"))
    })?;
    if pinfo.node_type.as_deref() == Some("leaf") {
        return Err(LondisteError::BadInput(format!(
            "the provider {provider_name} is a leaf: a leaf has no queue to read from"
        )));
    }
    // The root learns the location first: it spreads it to every node with a
    // pgq.location-info event.
    if !pinfo.is_root() {
        let root = find_root(&pdb, queue).await?;
        node::register_location(&root, queue, name, location, false).await?;
    }
    node::register_location(&pdb, queue, name, location, false).await?;
    let row = pdb
        .query_one(
            "select ret_code, ret_note, global_watermark from pgq_node.register_subscriber($1, $2, $3, $4)",
            &[&queue, &name, &cf.job_name, &at],
        )
        .await
        .map_err(|e| LondisteError::sql("registering the subscriber on the provider", e))?;
    let (code, note): (i32, Option<String>) = (row.get(0), row.get(1));
    if code >= 300 {
        return Err(LondisteError::Refused {
            what: "registering the subscriber on the provider".into(),
            code,
            note: note.unwrap_or_default(),
        });
    }
    let watermark: i64 = at.unwrap_or(row.get(2));
    let members = node::locations(&pdb, queue).await?;
    let provider_tables = node::tables(&pdb, queue).await?;
    let provider_seqs = seqs(&pdb, queue).await?;
    let note = in_tx!(&db, async {
        node::register_location(&db, queue, name, location, false).await?;
        for m in members.iter().filter(|m| m.node_name != name) {
            node::register_location(&db, queue, &m.node_name, &m.node_location, m.dead).await?;
        }
        let note = checked(
            &db,
            &format!("creating the {} node", kind.as_str()),
            "select ret_code, ret_note from pgq_node.create_node($1, $2, $3, $4, $5, $6, null)",
            &[
                &queue,
                &kind.as_str(),
                &name,
                &cf.job_name,
                &provider_name,
                &watermark,
            ],
        )
        .await?;
        // Python's extra_init: the set's tables and sequences are known from the start.
        for q in &provider_seqs {
            checked(
                &db,
                &format!("adding sequence {} to the set", q.seq_name),
                "select ret_code, ret_note from londiste.global_update_seq($1, $2, $3)",
                &[&queue, &q.seq_name, &q.last_value],
            )
            .await?;
        }
        for t in &provider_tables {
            checked(
                &db,
                &format!("adding {} to the set", t.table_name),
                "select ret_code, ret_note from londiste.global_add_table($1, $2)",
                &[&queue, &t.table_name],
            )
            .await?;
        }
        Ok::<_, LondisteError>(note)
    })?;
    Ok(note)
}

/// Follows providers from `start` up to the root and connects there.
pub(crate) async fn find_root(start: &Client, queue: &str) -> Result<Client> {
    let mut info = node::node_info(start, queue).await?;
    for _ in 0..32 {
        let location = info.provider_location.clone().ok_or_else(|| {
            LondisteError::State("a node on the way to the root has no provider".into())
        })?;
        let client = connect(&location, "provider").await?;
        info = node::node_info(&client, queue).await?;
        if info.is_root() {
            return Ok(client);
        }
    }
    Err(LondisteError::State(
        "no root found within 32 providers".into(),
    ))
}

/// The local node, or an error telling how to create it.
pub async fn require_node(db: &Client, cf: &NodeConfig) -> Result<NodeInfo> {
    let info = node::node_info(db, &cf.queue_name).await?;
    if !info.exists() {
        return Err(LondisteError::BadInput(format!(
            "no node for queue {} in this database: run create-root, create-branch or create-leaf first",
            cf.queue_name
        )));
    }
    Ok(info)
}

/// What `add-table` does with each table (with the `cli` feature, its flags: the doc
/// comments are the help).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct AddTableOptions {
    /// Every table (the provider's set, or on the root every table of the database).
    #[cfg_attr(feature = "cli", arg(long))]
    pub all: bool,
    /// Create missing tables from the provider's structure (columns, primary key).
    #[cfg_attr(feature = "cli", arg(long))]
    pub create: bool,
    /// The tables already hold the same data: no copy.
    #[cfg_attr(feature = "cli", arg(long))]
    pub expect_sync: bool,
    /// Keep the target's rows before the copy.
    #[cfg_attr(feature = "cli", arg(long))]
    pub skip_truncate: bool,
}

/// Registers tables on the node; returns the fully qualified names added.
pub async fn add_tables(
    cf: &NodeConfig,
    args: &[String],
    options: &AddTableOptions,
) -> Result<Vec<String>> {
    if args.is_empty() && !options.all {
        return Err(LondisteError::BadInput(
            "name tables to add, or give --all".into(),
        ));
    }
    let db = connect_local(cf).await?;
    let info = require_node(&db, cf).await?;
    let queue = cf.queue_name.as_str();
    let provider = if info.is_root() {
        None
    } else {
        let location = info
            .provider_location
            .clone()
            .ok_or_else(|| LondisteError::State("the node has no provider location".into()))?;
        Some(connect(&location, "provider").await?)
    };
    // Candidates: the provider's replicated tables, or the root's own tables.
    let candidates: Vec<String> = match &provider {
        Some(p) => {
            let src = node::tables(p, queue).await?;
            sync_table_list(&db, queue, &src.iter().map(|t| t.table_name.clone()).collect::<Vec<_>>()).await?;
            src.into_iter().filter(|t| t.local).map(|t| t.table_name).collect()
        }
        None => db
            .query(
                "select n.nspname || '.' || c.relname from pg_catalog.pg_class c \
                 join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                 where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', 'pgq', 'pgq_node', 'pgq_ext', 'londiste') \
                 and n.nspname not like 'pg\\_%' order by 1",
                &[],
            )
            .await
            .map_err(|e| LondisteError::sql("listing tables", e))?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    let wanted = if options.all {
        candidates.clone()
    } else {
        names::expand(args, &candidates).map_err(|e| match (&provider, e) {
            (Some(_), LondisteError::BadInput(m)) => {
                LondisteError::BadInput(format!("{m} among the tables the provider replicates"))
            }
            (_, e) => e,
        })?
    };
    let mut added = Vec::new();
    for table in wanted {
        if options.create && !table_exists(&db, &table).await? {
            let p = provider.as_ref().ok_or_else(|| {
                LondisteError::BadInput(format!("table {table} does not exist on the root"))
            })?;
            create_from(p, &db, &table).await?;
        }
        let mut tgargs: Vec<String> = Vec::new();
        if options.expect_sync {
            tgargs.push("expect_sync".into());
        }
        let attrs: Option<String> =
            (options.skip_truncate && !options.expect_sync).then(|| "skip_truncate=1".to_string());
        let none: Option<String> = None;
        checked(
            &db,
            &format!("adding table {table}"),
            "select ret_code, ret_note from londiste.local_add_table($1, $2, $3, $4, $5)",
            &[&queue, &table, &tgargs, &attrs, &none],
        )
        .await?;
        added.push(table);
    }
    Ok(added)
}

/// Makes the node's set list equal to the provider's (Python's `sync_table_list`).
async fn sync_table_list(db: &Client, queue: &str, provider_tables: &[String]) -> Result<()> {
    let local = node::tables(db, queue).await?;
    for t in provider_tables {
        if !local.iter().any(|l| &l.table_name == t) {
            checked(
                db,
                &format!("adding {t} to the set"),
                "select ret_code, ret_note from londiste.global_add_table($1, $2)",
                &[&queue, t],
            )
            .await?;
        }
    }
    for l in &local {
        if !provider_tables.contains(&l.table_name) {
            checked(
                db,
                &format!("removing {} from the set", l.table_name),
                "select ret_code, ret_note from londiste.global_remove_table($1, $2)",
                &[&queue, &l.table_name],
            )
            .await?;
        }
    }
    Ok(())
}

async fn table_exists(db: &Client, table: &str) -> Result<bool> {
    let (schema, name) = names::split(table);
    Ok(db
        .query_one(
            "select exists (select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p'))",
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("looking for table {table}"), e))?
        .get(0))
}

/// Creates `table` on `db` with the provider's columns, NOT NULLs and primary key.
async fn create_from(provider: &Client, db: &Client, table: &str) -> Result<()> {
    let (schema, name) = names::split(table);
    let cols = provider
        .query(
            "select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull \
             from pg_catalog.pg_attribute a where a.attrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass \
             and a.attnum > 0 and not a.attisdropped order by a.attnum",
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading the columns of {table} on the provider"), e))?;
    if cols.is_empty() {
        return Err(LondisteError::State(format!(
            "{table} has no columns on the provider"
        )));
    }
    let pk: Option<String> = provider
        .query_opt(
            "select pg_catalog.pg_get_constraintdef(oid) from pg_catalog.pg_constraint \
             where conrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass and contype = 'p'",
            &[&schema, &name],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading the key of {table} on the provider"), e))?
        .map(|r| r.get(0));
    let mut defs: Vec<String> = cols
        .iter()
        .map(|c| {
            let col: String = c.get(0);
            let ty: String = c.get(1);
            let not_null: bool = c.get(2);
            // format_type returns a type name the server itself produced: safe to embed.
            format!(
                "{} {ty}{}",
                strata_pgclient::quote_ident(&col),
                if not_null { " NOT NULL" } else { "" }
            )
        })
        .collect();
    if let Some(pk) = pk {
        defs.push(pk);
    }
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {} ({})",
        strata_pgclient::quote_ident(schema),
        names::quote_fq(table),
        defs.join(", ")
    );
    db.batch_execute(&sql)
        .await
        .map_err(|e| LondisteError::sql(format!("creating table {table}"), e))
}

/// Unregisters tables from the node (on the root: from the whole set).
pub async fn remove_tables(cf: &NodeConfig, args: &[String]) -> Result<Vec<String>> {
    if args.is_empty() {
        return Err(LondisteError::BadInput("name tables to remove".into()));
    }
    let db = connect_local(cf).await?;
    require_node(&db, cf).await?;
    let queue = cf.queue_name.as_str();
    let local: Vec<String> = node::tables(&db, queue)
        .await?
        .into_iter()
        .filter(|t| t.local)
        .map(|t| t.table_name)
        .collect();
    let wanted = names::expand(args, &local)?;
    for table in &wanted {
        checked(
            &db,
            &format!("removing table {table}"),
            "select ret_code, ret_note from londiste.local_remove_table($1, $2)",
            &[&queue, table],
        )
        .await?;
    }
    Ok(wanted)
}

/// Pauses or resumes the node's worker.
pub async fn set_paused(cf: &NodeConfig, paused: bool) -> Result<()> {
    let db = connect_local(cf).await?;
    let info = require_node(&db, cf).await?;
    let worker = info.worker_name.unwrap_or_else(|| cf.job_name.clone());
    node::set_paused(&db, &cf.queue_name, &worker, paused).await
}

/// Counts of the node's local tables by state, for `status`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TableCounts {
    /// Replayed by the main worker (`ok`).
    pub ok: usize,
    /// Owned by a copy task (`in-copy` to `do-sync`): not yet equal to the provider.
    pub copying: usize,
    /// Registered but not yet copied: the worker starts them as copy slots free up.
    pub waiting: usize,
}

/// Counts the local tables in each phase.
pub fn count_tables(tables: &[node::TableInfo]) -> TableCounts {
    let mut c = TableCounts::default();
    for t in tables.iter().filter(|t| t.local) {
        match t.state {
            TableState::Ok => c.ok += 1,
            TableState::Missing => c.waiting += 1,
            _ => c.copying += 1,
        }
    }
    c
}

/// Waits until every live member of the cascade has applied the EXECUTE files `names`
/// (they are in its `londiste.applied_execute`), asking them all every 200 ms; after
/// `timeout`, fails naming the nodes still behind. A dead node is not waited for.
pub async fn wait_executed(
    cf: &NodeConfig,
    names: &[String],
    timeout: std::time::Duration,
) -> Result<()> {
    let db = connect_local(cf).await?;
    require_node(&db, cf).await?;
    let queue = cf.queue_name.clone();
    let members: Vec<_> = crate::node::locations(&db, &queue)
        .await?
        .into_iter()
        .filter(|m| !m.dead)
        .collect();
    drop(db);
    let wanted = i64::try_from(names.len()).unwrap_or(i64::MAX);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut clients = Vec::new();
    for member in &members {
        clients.push(connect(&member.node_location, "member").await?);
    }
    loop {
        let mut behind = Vec::new();
        for (member, client) in members.iter().zip(&clients) {
            let applied: i64 = client
                .query_one(
                    "select count(*) from londiste.applied_execute where queue_name = $1 and execute_file = any($2)",
                    &[&queue, &names],
                )
                .await
                .map_err(|e| LondisteError::sql(format!("asking {}", member.node_name), e))?
                .get(0);
            if applied < wanted {
                behind.push(member.node_name.clone());
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(LondisteError::State(format!(
                "not applied within {} s on: {} (are their workers running?)",
                timeout.as_secs(),
                behind.join(", ")
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Runs SQL files on the root and sends them down the cascade as `EXECUTE` events, in one
/// transaction (Python Londiste's `execute`): a file already applied (by name, in
/// `londiste.applied_execute`) is skipped. Returns each file with whether it ran.
pub async fn execute(cf: &NodeConfig, files: &[std::path::PathBuf]) -> Result<Vec<(String, bool)>> {
    if files.is_empty() {
        return Err(LondisteError::BadInput("name SQL files to execute".into()));
    }
    let mut scripts = Vec::new();
    for path in files {
        let sql = std::fs::read_to_string(path)
            .map_err(|e| LondisteError::BadInput(format!("{}: {e}", path.display())))?;
        let attrs = ExecAttrs::parse_sql(&sql)
            .map_err(|e| LondisteError::BadInput(format!("{}: {e}", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| LondisteError::BadInput(format!("{}: not a file", path.display())))?;
        scripts.push((name, sql, attrs));
    }
    let db = connect_local(cf).await?;
    let info = require_node(&db, cf).await?;
    if !info.is_root() {
        return Err(LondisteError::BadInput(
            "execute runs on the root: use the root's ini file".into(),
        ));
    }
    let queue = cf.queue_name.as_str();
    let local = local_objects(&db, queue).await?;
    in_tx!(&db, async {
        db.batch_execute("set local session_replication_role = 'local'")
            .await
            .map_err(|e| LondisteError::sql("switching to local role", e))?;
        let mut done = Vec::new();
        for (name, sql, attrs) in &scripts {
            let encoded = (!attrs.is_empty()).then(|| attrs.to_urlenc());
            let row = db
                .query_one(
                    "select ret_code, ret_note from londiste.execute_start($1, $2, $3, true, $4)",
                    &[&queue, name, sql, &encoded],
                )
                .await
                .map_err(|e| LondisteError::sql(format!("starting {name}"), e))?;
            if row.get::<_, i32>(0) > 200 {
                done.push((name.clone(), false));
                continue;
            }
            // The header decides here as on every other node; the event goes down the
            // cascade either way.
            if attrs.need_execute(&db, &local).await? {
                db.batch_execute(&attrs.process_sql(sql, &local)?)
                    .await
                    .map_err(|e| LondisteError::sql(format!("running {name}"), e))?;
            }
            checked(
                &db,
                &format!("finishing {name}"),
                "select ret_code, ret_note from londiste.execute_finish($1, $2)",
                &[&queue, name],
            )
            .await?;
            done.push((name.clone(), true));
        }
        Ok::<_, LondisteError>(done)
    })
}

/// The tables and sequences this node replicates, as EXECUTE headers match them.
pub async fn local_objects(
    db: &impl tokio_postgres::GenericClient,
    queue: &str,
) -> Result<LocalObjects> {
    let tables = node::tables(db, queue)
        .await?
        .into_iter()
        .filter(|t| t.local)
        .map(|t| (t.table_name.clone(), t.dest().to_string()))
        .collect();
    let seqs = db
        .query(
            "select seq_name from londiste.get_seq_list($1) where local",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the local sequences", e))?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(0)))
        .collect();
    Ok(LocalObjects { tables, seqs })
}

/// One sequence of the set as `londiste.get_seq_list` returns it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeqInfo {
    /// Fully qualified, as the set names it.
    pub seq_name: String,
    /// The value the root last published: subscribers keep theirs at least this high.
    pub last_value: i64,
    /// Replicated on this node, not just known in the set.
    pub local: bool,
}

/// Every sequence of the set known to the node.
pub async fn seqs(db: &Client, queue: &str) -> Result<Vec<SeqInfo>> {
    let rows = db
        .query(
            "select seq_name, last_value, local from londiste.get_seq_list($1) order by 1",
            &[&queue],
        )
        .await
        .map_err(|e| LondisteError::sql("reading the sequence list", e))?;
    Ok(rows
        .iter()
        .map(|r| SeqInfo {
            seq_name: r.get(0),
            last_value: r.get(1),
            local: r.get(2),
        })
        .collect())
}

/// Registers sequences (globs; `all` for every candidate): on the root the database's
/// sequences, whose values the root worker then publishes (`londiste.root_check_seqs`);
/// elsewhere the provider's, which the worker keeps at least at the published value.
pub async fn add_seqs(cf: &NodeConfig, args: &[String], all: bool) -> Result<Vec<String>> {
    if args.is_empty() && !all {
        return Err(LondisteError::BadInput(
            "name sequences to add, or give --all".into(),
        ));
    }
    let db = connect_local(cf).await?;
    let info = require_node(&db, cf).await?;
    let queue = cf.queue_name.as_str();
    let candidates: Vec<String> = if info.is_root() {
        db.query(
            "select n.nspname || '.' || c.relname from pg_catalog.pg_class c \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where c.relkind = 'S' and n.nspname not in ('pg_catalog', 'information_schema', 'pgq', 'pgq_node', 'londiste') order by 1",
            &[],
        )
        .await
        .map_err(|e| LondisteError::sql("listing sequences", e))?
        .iter()
        .map(|r| r.get(0))
        .collect()
    } else {
        let location = info
            .provider_location
            .clone()
            .ok_or_else(|| LondisteError::State("the node has no provider location".into()))?;
        let provider = connect(&location, "provider").await?;
        let src = seqs(&provider, queue).await?;
        let local = seqs(&db, queue).await?;
        // Python's extra_init/sync: the set's sequences with their published values.
        for s in &src {
            if !local.iter().any(|l| l.seq_name == s.seq_name) {
                checked(
                    &db,
                    &format!("adding sequence {} to the set", s.seq_name),
                    "select ret_code, ret_note from londiste.global_update_seq($1, $2, $3)",
                    &[&queue, &s.seq_name, &s.last_value],
                )
                .await?;
            }
        }
        src.into_iter()
            .filter(|s| s.local)
            .map(|s| s.seq_name)
            .collect()
    };
    let wanted = if all {
        candidates
    } else {
        names::expand(args, &candidates)?
    };
    for seq in &wanted {
        checked(
            &db,
            &format!("adding sequence {seq}"),
            "select ret_code, ret_note from londiste.local_add_seq($1, $2)",
            &[&queue, seq],
        )
        .await?;
    }
    Ok(wanted)
}

/// Unregisters sequences from the node.
pub async fn remove_seqs(cf: &NodeConfig, args: &[String]) -> Result<Vec<String>> {
    if args.is_empty() {
        return Err(LondisteError::BadInput("name sequences to remove".into()));
    }
    let db = connect_local(cf).await?;
    require_node(&db, cf).await?;
    let queue = cf.queue_name.as_str();
    let local: Vec<String> = seqs(&db, queue)
        .await?
        .into_iter()
        .filter(|s| s.local)
        .map(|s| s.seq_name)
        .collect();
    let wanted = names::expand(args, &local)?;
    for seq in &wanted {
        checked(
            &db,
            &format!("removing sequence {seq}"),
            "select ret_code, ret_note from londiste.local_remove_seq($1, $2)",
            &[&queue, seq],
        )
        .await?;
    }
    Ok(wanted)
}

/// A column difference `check` found on one table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StructureDiff {
    /// The replicated table, fully qualified.
    pub table: String,
    /// What differs, e.g. `column extra: int4 here, missing on the provider`.
    pub problem: String,
}

/// The columns of `table` (`schema.name`), name -> type, from the catalog.
async fn columns(
    client: &Client,
    table: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let rows = client
        .query(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod) \
             from pg_attribute a where a.attrelid = $1::text::regclass and a.attnum > 0 and not a.attisdropped",
            &[&table],
        )
        .await
        .map_err(|e| LondisteError::sql(format!("reading the columns of {table}"), e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Compares the columns (names and types) of every table this node replicates with the
/// provider's: Python's `check`. Differences are what makes replay fail later (an insert
/// naming a column the target lacks) or lose data silently (a narrower type).
pub async fn check_structure(cf: &NodeConfig) -> Result<Vec<StructureDiff>> {
    let db = connect_local(cf).await?;
    let info = require_node(&db, cf).await?;
    if info.is_root() {
        return Err(LondisteError::BadInput(
            "check compares a subscriber with its provider: use a branch or leaf ini file".into(),
        ));
    }
    let location = info
        .provider_location
        .clone()
        .ok_or_else(|| LondisteError::State("the node has no provider location".into()))?;
    let provider = connect(&location, "provider").await?;
    let mut diffs = Vec::new();
    for table in node::tables(&db, &cf.queue_name)
        .await?
        .into_iter()
        .filter(|t| t.local)
    {
        let here = columns(&db, table.dest()).await?;
        let there = columns(&provider, &table.table_name).await?;
        for (name, ty) in &there {
            match here.get(name) {
                None => diffs.push(StructureDiff {
                    table: table.table_name.clone(),
                    problem: format!("column {name} ({ty}) is missing here"),
                }),
                Some(local) if local != ty => diffs.push(StructureDiff {
                    table: table.table_name.clone(),
                    problem: format!("column {name}: {ty} on the provider, {local} here"),
                }),
                _ => {}
            }
        }
        for (name, ty) in &here {
            if !there.contains_key(name) {
                diffs.push(StructureDiff {
                    table: table.table_name.clone(),
                    problem: format!("column {name} ({ty}) is here but not on the provider"),
                });
            }
        }
    }
    Ok(diffs)
}

/// Copies `tables` again from the provider: their state goes back to the start, and the
/// worker truncates and copies them (Python's `resync`). Only tables this node replicates.
/// Naming no table is bad input (checked before connecting).
pub async fn resync(cf: &NodeConfig, tables: &[String]) -> Result<Vec<String>> {
    if tables.is_empty() {
        return Err(LondisteError::BadInput(
            "name the tables to copy again".into(),
        ));
    }
    let db = connect_local(cf).await?;
    let info = require_node(&db, cf).await?;
    if info.is_root() {
        return Err(LondisteError::BadInput(
            "resync copies from the provider: use a branch or leaf ini file".into(),
        ));
    }
    let local: Vec<String> = node::tables(&db, &cf.queue_name)
        .await?
        .into_iter()
        .filter(|t| t.local)
        .map(|t| t.table_name)
        .collect();
    let mut done = Vec::new();
    for wanted in tables {
        let full = if wanted.contains('.') {
            wanted.clone()
        } else {
            format!("public.{wanted}")
        };
        if !local.contains(&full) {
            return Err(LondisteError::BadInput(format!(
                "{full} is not replicated on this node (see `tables`)"
            )));
        }
        node::checked(
            &db,
            &format!("resetting {full}"),
            "select ret_code, ret_note from londiste.local_set_table_state($1, $2, null, null)",
            &[&cf.queue_name, &full],
        )
        .await?;
        done.push(full);
    }
    Ok(done)
}
