//! Inputs in object storage and on HTTP: `s3://`, `gs://`, `az://` (also `abfs://`), `http(s)://`,
//! through the `object_store` crate. Credentials, region and endpoint come from each store's
//! standard environment (`AWS_*` with `~/.aws` profiles, `GOOGLE_*`, `AZURE_*`), as the cloud's
//! own CLI reads them.
//!
//! Parquet is read with ranged requests (the footer, then only the needed column chunks of the
//! needed row groups); every other format is streamed once into a local spool file, hashed on the
//! way, and read from there (a text file is read twice: for its columns, then for its rows).
//! Transient errors (5xx, throttling, resets) are retried with backoff by `object_store`; a
//! missing bucket or object, denied access or bad credentials is an input error naming the URL
//! and the store's error code — never a credential.

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

use crate::error::Problem;

/// URL schemes read from object storage or HTTP.
const SCHEMES: &[&str] = &[
    "s3", "s3a", "gs", "az", "abfs", "abfss", "azure", "http", "https",
];

/// Whether an input names a URL rather than a local path.
pub(crate) fn is_url(input: &str) -> bool {
    input
        .split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// The runtime object_store's futures run on (rayon's threads block on them).
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rollproof-io")
        .enable_all()
        .build()
        .expect("an I/O runtime starts")
});

pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

/// One store per scheme and bucket (container, host), shared by its objects.
static STORES: LazyLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// An object in a store.
#[derive(Debug)]
pub(crate) struct Remote {
    /// The object's URL, as reports show it.
    pub(crate) url: String,
    shown: PathBuf,
    store: Arc<dyn ObjectStore>,
    pub(crate) path: ObjectPath,
    pub(crate) meta: ObjectMeta,
    /// The object, streamed once to a local file (every format but Parquet), with its SHA-256.
    spool: OnceLock<Result<Spool, Problem>>,
}

#[derive(Debug)]
struct Spool {
    file: tempfile::TempPath,
    sha256: String,
}

impl PartialEq for Remote {
    fn eq(&self, other: &Remote) -> bool {
        self.url == other.url
    }
}

impl Eq for Remote {}

impl PartialOrd for Remote {
    fn partial_cmp(&self, other: &Remote) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Remote {
    fn cmp(&self, other: &Remote) -> std::cmp::Ordering {
        self.url.cmp(&other.url)
    }
}

/// The URL split into the store's part (`s3://bucket`) and the key (`logs/a.parquet`).
fn split_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    Some((
        format!("{}://{bucket}", scheme.to_ascii_lowercase()),
        key.to_string(),
    ))
}

impl Remote {
    pub(crate) fn shown_path(&self) -> &Path {
        &self.shown
    }

    /// A problem with this object, naming its URL.
    pub(crate) fn problem(&self, e: &object_store::Error) -> Problem {
        store_problem(&self.url, e)
    }

    pub(crate) fn get_range(&self, range: Range<u64>) -> Result<Vec<u8>, Problem> {
        block_on(self.store.get_range(&self.path, range))
            .map(|b| b.to_vec())
            .map_err(|e| self.problem(&e))
    }

    /// The local copy, streamed and hashed on first use.
    pub(crate) fn spooled(&self) -> Result<&Path, Problem> {
        match self.spool.get_or_init(|| self.download()) {
            Ok(s) => Ok(&s.file),
            Err(p) => Err(p.clone()),
        }
    }

    fn download(&self) -> Result<Spool, Problem> {
        let local = |e: std::io::Error| {
            Problem::new(
                format!("no room for a local copy ({})", crate::error::io_reason(&e)),
                "a writable temporary folder (TMPDIR)",
            )
            .file(&self.shown)
            .hint(
                "text formats in object storage are streamed to a temporary file once; set TMPDIR",
            )
        };
        let mut file = tempfile::NamedTempFile::new().map_err(local)?;
        let mut hasher = Sha256::new();
        block_on(async {
            let mut stream = self
                .store
                .get(&self.path)
                .await
                .map_err(|e| self.problem(&e))?
                .into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.problem(&e))?;
                hasher.update(&chunk);
                file.write_all(&chunk).map_err(local)?;
            }
            Ok::<(), Problem>(())
        })?;
        file.flush().map_err(local)?;
        Ok(Spool {
            file: file.into_temp_path(),
            sha256: hex(&hasher.finalize()),
        })
    }

    /// The SHA-256 of the object when it was read whole, or when `read_whole` asks for it.
    pub(crate) fn sha256(&self, read_whole: bool) -> Result<Option<String>, Problem> {
        if let Some(Ok(spool)) = self.spool.get() {
            return Ok(Some(spool.sha256.clone()));
        }
        if !read_whole {
            return Ok(None);
        }
        let mut hasher = Sha256::new();
        block_on(async {
            let mut stream = self
                .store
                .get(&self.path)
                .await
                .map_err(|e| self.problem(&e))?
                .into_stream();
            while let Some(chunk) = stream.next().await {
                hasher.update(&chunk.map_err(|e| self.problem(&e))?);
            }
            Ok::<(), Problem>(())
        })?;
        Ok(Some(hex(&hasher.finalize())))
    }

    /// A Parquet reader of ranged requests.
    pub(crate) fn parquet_reader(&self) -> ObjectReader {
        ObjectReader {
            store: self.store.clone(),
            path: self.path.clone(),
            size: self.meta.size,
            checked: Vec::new(),
            refused: Arc::default(),
        }
    }
}

/// Parquet's async reader over an object: the footer by a bounded range request (the size is
/// known from listing), then the column chunks a read asks for, coalesced by `get_ranges`.
pub(crate) struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
    /// Column chunks whose page headers are checked when they are fetched, and where a failed
    /// check is left (column, reason) for the caller's message.
    pub(crate) checked: Vec<super::parquet_pages::Chunk>,
    pub(crate) refused: Arc<std::sync::Mutex<Option<(String, String)>>>,
}

impl parquet::arrow::async_reader::AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        Box::pin(async move {
            let fetched = self
                .store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
            // The page headers of the chunks about to be decoded, checked in memory.
            let chunks: Vec<(&super::parquet_pages::Chunk, &bytes::Bytes)> = self
                .checked
                .iter()
                .filter_map(|c| {
                    ranges
                        .iter()
                        .position(|r| r.start == c.start && r.end == c.start + c.len)
                        .map(|i| (c, &fetched[i]))
                })
                .collect();
            let verdict = super::parquet_pages::check_unit(chunks.iter().map(|(c, _)| *c), |at| {
                let (chunk, bytes) = chunks
                    .iter()
                    .find(|(c, _)| at >= c.start && at < c.start + c.len)
                    .ok_or_else(|| "a page header outside its column chunk".to_string())?;
                super::parquet_pages::header_in(bytes, chunk.start, at)
            });
            if let Err(refused) = verdict {
                let message = refused.1.clone();
                *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(refused);
                return Err(parquet::errors::ParquetError::General(message));
            }
            Ok(fetched)
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<
        'a,
        parquet::errors::Result<Arc<parquet::file::metadata::ParquetMetaData>>,
    > {
        Box::pin(async move {
            let size = self.size;
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store for `base` (`s3://bucket`), built from the environment once.
fn store_for(base: &str) -> Result<Arc<dyn ObjectStore>, Problem> {
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(store) = stores.get(base) {
        return Ok(store.clone());
    }
    let scheme = base.split("://").next().unwrap_or_default();
    let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match scheme {
        "s3" | "s3a" => aws_from_env()
            .with_url(base)
            .build()
            .map(|s| Arc::new(s) as _),
        "gs" => object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_url(base)
            .build()
            .map(|s| Arc::new(s) as _),
        "az" | "abfs" | "abfss" | "azure" => object_store::azure::MicrosoftAzureBuilder::from_env()
            .with_url(base)
            .build()
            .map(|s| Arc::new(s) as _),
        _ => object_store::http::HttpBuilder::new()
            .with_url(base)
            .build()
            .map(|s| Arc::new(s) as _),
    };
    let store = built.map_err(|e| {
        Problem::new(
            format!(
                "a store that cannot be configured ({})",
                scrub(&e.to_string())
            ),
            "credentials, region and endpoint in the store's standard environment",
        )
        .file(Path::new(base))
        .hint(env_hint(scheme))
    })?;
    stores.insert(base.to_string(), store.clone());
    Ok(store)
}

fn env_hint(scheme: &str) -> &'static str {
    match scheme {
        "s3" | "s3a" => "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a profile in ~/.aws with AWS_PROFILE), AWS_REGION, and AWS_ENDPOINT_URL for an S3-compatible store",
        "gs" => "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file",
        "az" | "abfs" | "abfss" | "azure" => "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or a SAS token)",
        _ => "check the URL; HTTP inputs are read without credentials",
    }
}

/// The S3 builder from `AWS_*` variables, with what the AWS CLI would also read: the shared
/// credentials and config files of the selected profile (`AWS_PROFILE`, else `default`) for what
/// the variables do not set.
fn aws_from_env() -> object_store::aws::AmazonS3Builder {
    use object_store::aws::AmazonS3ConfigKey as Key;
    let mut builder = object_store::aws::AmazonS3Builder::from_env();
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let home = var("HOME").map(PathBuf::from);
    let credentials = var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
    let config = var("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
    let creds = credentials
        .map(|p| ini_section(&p, &profile))
        .unwrap_or_default();
    let conf = config
        .map(|p| {
            ini_section(
                &p,
                &if profile == "default" {
                    profile.clone()
                } else {
                    format!("profile {profile}")
                },
            )
        })
        .unwrap_or_default();
    if var("AWS_ACCESS_KEY_ID").is_none() {
        for (file_key, key) in [
            ("aws_access_key_id", Key::AccessKeyId),
            ("aws_secret_access_key", Key::SecretAccessKey),
            ("aws_session_token", Key::Token),
        ] {
            if let Some(v) = creds.get(file_key).or_else(|| conf.get(file_key)) {
                builder = builder.with_config(key, v);
            }
        }
    }
    if var("AWS_REGION").is_none() && var("AWS_DEFAULT_REGION").is_none() {
        if let Some(region) = conf.get("region") {
            builder = builder.with_config(Key::Region, region);
        }
    }
    if var("AWS_ENDPOINT_URL").is_none() && var("AWS_ENDPOINT").is_none() {
        if let Some(endpoint) = conf.get("endpoint_url") {
            builder = builder.with_config(Key::Endpoint, endpoint);
        }
    }
    builder
}

/// `key = value` pairs of `[section]` in an INI file (the AWS shared files); empty when absent.
fn ini_section(path: &Path, section: &str) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut current = String::new();
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
        } else if current == section {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    out
}

/// Resolves a URL, with glob characters in its key listed under the prefix before the first of
/// them and matched; without, the object is looked up. Objects are returned sorted by URL.
pub(crate) fn resolve(url: &str, problems: &mut Vec<Problem>) -> Vec<Remote> {
    let Some((base, key)) = split_url(url) else {
        problems.push(
            Problem::new(format!("the URL `{url}`"), "scheme://bucket/key")
                .hint("write e.g. s3://bucket/logs/requests-*.parquet"),
        );
        return Vec::new();
    };
    let store = match store_for(&base) {
        Ok(s) => s,
        Err(p) => {
            problems.push(p);
            return Vec::new();
        }
    };
    let make = |meta: ObjectMeta| Remote {
        url: format!("{base}/{}", meta.location),
        shown: PathBuf::from(format!("{base}/{}", meta.location)),
        store: store.clone(),
        path: meta.location.clone(),
        meta,
        spool: OnceLock::new(),
    };
    let glob_at = key.find(['*', '?', '[']);
    let Some(glob_at) = glob_at else {
        let path = ObjectPath::from(key.as_str());
        return match block_on(store.head(&path)) {
            Ok(meta) => vec![make(meta)],
            Err(e) => {
                // A HEAD answer has no body: a listing tells a missing bucket from a missing key.
                let listed = block_on(async { store.list(None).next().await.transpose() });
                problems.push(match listed {
                    Err(list_error) if xml_code(&list_error.to_string()).is_some() => {
                        store_problem(url, &list_error)
                    }
                    _ => store_problem(url, &e),
                });
                Vec::new()
            }
        };
    };
    let pattern = match glob::Pattern::new(&key) {
        Ok(p) => p,
        Err(e) => {
            problems.push(
                Problem::new(
                    format!("an invalid glob ({e})"),
                    "a glob such as `logs/requests-*.parquet`",
                )
                .file(Path::new(url))
                .hint("quote the pattern in the incident file"),
            );
            return Vec::new();
        }
    };
    let prefix = key[..glob_at]
        .rfind('/')
        .map(|i| ObjectPath::from(&key[..i]));
    let listed: Result<Vec<ObjectMeta>, object_store::Error> = block_on(async {
        let mut out = Vec::new();
        let mut stream = store.list(prefix.as_ref());
        while let Some(meta) = stream.next().await {
            out.push(meta?);
        }
        Ok(out)
    });
    let mut found: Vec<Remote> = match listed {
        Ok(metas) => metas
            .into_iter()
            .filter(|m| {
                pattern.matches_with(
                    m.location.as_ref(),
                    glob::MatchOptions {
                        require_literal_separator: true,
                        ..Default::default()
                    },
                )
            })
            .map(make)
            .collect(),
        Err(e) => {
            problems.push(store_problem(url, &e));
            return Vec::new();
        }
    };
    if found.is_empty() {
        problems.push(
            Problem::new("a glob that matched no object", "at least one object")
                .file(Path::new(url))
                .hint("globs in a URL are matched against the keys listed under the prefix before the first `*`"),
        );
    }
    found.sort();
    found
}

/// An object-store error as an input problem: the URL, the store's error code and what it means.
/// The store's raw message is not shown (an S3 error body names the access key id); secrets in
/// the environment are scrubbed from anything that is.
pub(crate) fn store_problem(url: &str, e: &object_store::Error) -> Problem {
    let text = e.to_string();
    let code = xml_code(&text);
    let (found, hint) = match e {
        object_store::Error::NotFound { .. } => (
            format!("no such object ({})", code.as_deref().unwrap_or("NotFound")),
            "check the bucket and the key; keys are case-sensitive",
        ),
        object_store::Error::PermissionDenied { .. } => (
            format!("access denied ({})", code.as_deref().unwrap_or("AccessDenied")),
            "the credentials in the environment may not read this object: check the bucket policy",
        ),
        object_store::Error::Unauthenticated { .. } => (
            format!("credentials refused ({})", code.as_deref().unwrap_or("Unauthenticated")),
            "check the store's credentials in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile)",
        ),
        _ => match code {
            Some(code) if code.contains("NoSuchBucket") => (
                format!("no such bucket ({code})"),
                "check the bucket's name and the region (AWS_REGION)",
            ),
            Some(code)
                if ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"]
                    .iter()
                    .any(|c| code.contains(c)) =>
            (
                format!("credentials refused ({code})"),
                "check the store's credentials in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile)",
            ),
            Some(code) => (format!("a store error ({code})"), "see the store's documentation of this error code"),
            None => (
                format!("a store error ({})", crate::error::shown(&scrub(&text), 200)),
                "check the endpoint (AWS_ENDPOINT_URL) and the network; transient errors were retried",
            ),
        },
    };
    Problem::new(found, "a readable object")
        .file(Path::new(url))
        .hint(hint)
}

/// The `<Code>…</Code>` of an S3-style XML error, or an HTTP status, in an error's text.
fn xml_code(text: &str) -> Option<String> {
    if let Some(start) = text.find("<Code>") {
        let rest = &text[start + 6..];
        if let Some(end) = rest.find("</Code>") {
            return Some(rest[..end].to_string());
        }
    }
    let status = text.find("status ").map(|i| &text[i + 7..])?;
    let code: String = status.chars().take_while(|c| c.is_ascii_digit()).collect();
    (!code.is_empty()).then(|| format!("HTTP {code}"))
}

/// Removes the values of credential variables from a message.
pub(crate) fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    for (key, value) in std::env::vars() {
        let secret = key.contains("SECRET")
            || key.contains("TOKEN")
            || key.contains("PASSWORD")
            || key.ends_with("ACCESS_KEY_ID")
            || key.ends_with("ACCOUNT_KEY")
            || key.contains("SAS");
        if secret && value.len() >= 4 {
            out = out.replace(&value, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_codes() {
        assert!(is_url("s3://bucket/logs/*.parquet"));
        assert!(is_url("HTTPS://example.com/a.csv"));
        assert!(!is_url("logs/a.parquet"));
        assert!(!is_url("C://x"));
        assert_eq!(
            split_url("s3://b/logs/a.parquet"),
            Some(("s3://b".to_string(), "logs/a.parquet".to_string()))
        );
        assert_eq!(
            xml_code("<Error><Code>NoSuchBucket</Code></Error>").as_deref(),
            Some("NoSuchBucket")
        );
        assert_eq!(
            xml_code("Received redirect, status 301").as_deref(),
            Some("HTTP 301")
        );
    }

    #[test]
    fn profiles_are_read_like_the_aws_cli() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials");
        std::fs::write(&p, "[default]\naws_access_key_id = A\n[ci]\naws_access_key_id = B\naws_secret_access_key = S\n").unwrap();
        assert_eq!(
            ini_section(&p, "ci")
                .get("aws_secret_access_key")
                .map(String::as_str),
            Some("S")
        );
        assert_eq!(
            ini_section(&p, "default")
                .get("aws_access_key_id")
                .map(String::as_str),
            Some("A")
        );
        assert!(ini_section(&p, "nope").is_empty());
    }
}
