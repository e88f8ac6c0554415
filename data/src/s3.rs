//! Image folders on S3 or an S3-compatible store (rust-s3 on tokio): paginated listing under a
//! prefix and concurrent downloads. Credentials come from the usual AWS environment variables
//! or profile unless given; `AWS_ENDPOINT_URL` selects a custom endpoint (addressed path-style,
//! as MinIO, s3s-fs and moto want), `AWS_REGION` or `AWS_DEFAULT_REGION` the region.

use futures_util::StreamExt;
use s3::Bucket;
use s3::Region;
use s3::creds::Credentials;
use s3::error::S3Error;

use crate::DataError;

/// Downloads in flight at once.
const CONCURRENT_DOWNLOADS: usize = 32;

/// `s3://bucket/prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` ("" for the whole bucket).
    pub prefix: String,
}

impl S3Location {
    /// Parse `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<Self, DataError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| DataError::Invalid(format!("`{url}` is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(DataError::Invalid(format!("`{url}` names no bucket")));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The location of `sub` under this one.
    pub fn join(&self, sub: &str) -> Self {
        let prefix = match (self.prefix.is_empty(), sub.trim_matches('/')) {
            (_, "") => self.prefix.clone(),
            (true, s) => s.to_string(),
            (false, s) => format!("{}/{s}", self.prefix),
        };
        Self {
            bucket: self.bucket.clone(),
            prefix,
        }
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How to reach the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Config {
    /// A custom endpoint (`http://127.0.0.1:9000`); `None` for AWS.
    pub endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// Address buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key`.
    pub path_style: bool,
    /// Access key id and secret; `None` for the environment or profile.
    pub credentials: Option<(String, String)>,
}

impl S3Config {
    /// From the environment: `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, `AWS_REGION` or
    /// `AWS_DEFAULT_REGION` (else us-east-1); path-style with a custom endpoint.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"));
        Self {
            path_style: endpoint.is_some(),
            endpoint,
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            credentials: None,
        }
    }

    fn bucket(&self, name: &str) -> Result<Box<Bucket>, String> {
        let region = match &self.endpoint {
            Some(endpoint) => Region::Custom {
                region: self.region.clone(),
                endpoint: endpoint.clone(),
            },
            None => self
                .region
                .parse()
                .map_err(|e| format!("region `{}`: {e}", self.region))?,
        };
        let credentials = match &self.credentials {
            Some((key, secret)) => Credentials::new(Some(key), Some(secret), None, None, None),
            None => Credentials::default(),
        }
        .map_err(|e| {
            format!(
                "no AWS credentials ({e}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                 AWS_PROFILE"
            )
        })?;
        let bucket = Bucket::new(name, region, credentials).map_err(|e| e.to_string())?;
        Ok(if self.path_style {
            bucket.with_path_style()
        } else {
            bucket
        })
    }
}

fn describe(e: S3Error, what: &str) -> String {
    match e {
        S3Error::HttpFailWithBody(status, body) => {
            let code = body
                .split("<Code>")
                .nth(1)
                .and_then(|s| s.split("</Code>").next())
                .unwrap_or("");
            match (status, code) {
                (404, "NoSuchBucket") | (404, "") if what == "list" => {
                    "the bucket does not exist (NoSuchBucket)".to_string()
                }
                (403, c) => format!(
                    "access denied ({}); check the credentials (AWS_ACCESS_KEY_ID, \
                     AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the bucket policy",
                    if c.is_empty() { "HTTP 403" } else { c }
                ),
                (s, c) => format!("HTTP {s} {c}"),
            }
        }
        other => other.to_string(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, DataError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| DataError::Invalid(format!("cannot start the S3 runtime: {e}")))
}

/// Every object key under `location` (all pages), sorted.
pub fn list(location: &S3Location, config: &S3Config) -> Result<Vec<String>, DataError> {
    let err = |m: String| DataError::Invalid(format!("{}: {m}", location.url()));
    let bucket = config.bucket(&location.bucket).map_err(err)?;
    let prefix = if location.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", location.prefix)
    };
    let pages = runtime()?
        .block_on(bucket.list(prefix, None))
        .map_err(|e| err(describe(e, "list")))?;
    let mut keys: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.contents.into_iter().map(|o| o.key))
        .filter(|k| !k.ends_with('/'))
        .collect();
    keys.sort();
    Ok(keys)
}

/// Download `keys` of `bucket` concurrently; each result in the order of `keys`.
pub fn fetch(
    bucket_name: &str,
    keys: &[String],
    config: &S3Config,
) -> Result<Vec<Result<Vec<u8>, String>>, DataError> {
    let bucket = config
        .bucket(bucket_name)
        .map_err(|m| DataError::Invalid(format!("s3://{bucket_name}: {m}")))?;
    let rt = runtime()?;
    let mut out: Vec<(usize, Result<Vec<u8>, String>)> = rt.block_on(
        futures_util::stream::iter(keys.iter().enumerate())
            .map(|(i, key)| {
                let bucket = bucket.clone();
                async move {
                    let got = bucket
                        .get_object(key)
                        .await
                        .map(|r| r.bytes().to_vec())
                        .map_err(|e| describe(e, "get"));
                    (i, got)
                }
            })
            .buffer_unordered(CONCURRENT_DOWNLOADS)
            .collect(),
    );
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_join() {
        let l = S3Location::parse("s3://data/images/").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("data", "images"));
        assert_eq!(l.join("train").url(), "s3://data/images/train");
        let b = S3Location::parse("s3://data").unwrap();
        assert_eq!(b.join("val/").url(), "s3://data/val");
        assert!(S3Location::parse("s3:///x").is_err());
        assert!(S3Location::parse("/local").is_err());
    }
}
