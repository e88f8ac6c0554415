//! The MLflow REST API (2.0) through reqwest: experiment get-or-create, runs/create,
//! runs/log-batch, runs/set-tag, runs/update, and artifact upload through the server's
//! `mlflow-artifacts` proxy.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::{RunStatus, now_ms};

/// A run on an MLflow tracking server.
pub struct RestClient {
    base: String,
    client: Client,
    run_id: String,
    experiment_id: String,
    /// Where the server keeps this run's artifacts, relative to its `mlflow-artifacts` root.
    artifact_path: String,
}

fn tags_json(tags: &[(String, String)]) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

impl RestClient {
    /// Start a run on the server at `uri` (`http://host:port`).
    pub fn start(
        uri: &str,
        experiment: &str,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<Self, String> {
        let mut this = Self::client(uri)?;
        this.experiment_id = this.get_or_create_experiment(experiment)?;
        let mut all_tags = vec![("mlflow.runName".to_string(), run_name.to_string())];
        all_tags.extend_from_slice(tags);
        let created = this.post(
            "runs/create",
            json!({
                "experiment_id": this.experiment_id,
                "run_name": run_name,
                "start_time": now_ms(),
                "tags": tags_json(&all_tags),
            }),
        )?;
        this.run_id = created["run"]["info"]["run_id"]
            .as_str()
            .ok_or("runs/create returned no run id")?
            .to_string();
        this.artifact_path =
            Self::artifact_path(&created["run"]["info"], &this.experiment_id, &this.run_id);
        Ok(this)
    }

    /// A client of the server at `uri`, not yet with a run.
    fn client(uri: &str) -> Result<Self, String> {
        if !uri.starts_with("http://") && !uri.starts_with("https://") {
            return Err(format!("`{uri}` is not an http(s) URI"));
        }
        // MLflow's own clients read this variable (seconds; theirs default to 120).
        let timeout = std::env::var("MLFLOW_HTTP_REQUEST_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(30);
        let client = Client::builder()
            .timeout(Duration::from_secs(timeout))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            base: uri.trim_end_matches('/').to_string(),
            client,
            run_id: String::new(),
            experiment_id: String::new(),
            artifact_path: String::new(),
        })
    }

    /// Where the run's artifacts go. A server that proxies artifacts gives
    /// `mlflow-artifacts:/<path>`; one that does not would need direct store access, which the
    /// REST API cannot give, so uploads fail (reported once) and the artifacts stay in the
    /// local store.
    fn artifact_path(info: &Value, experiment_id: &str, run_id: &str) -> String {
        let uri = info["artifact_uri"].as_str().unwrap_or("");
        match uri.strip_prefix("mlflow-artifacts:") {
            Some(rest) => rest.trim_start_matches('/').to_string(),
            None => format!("{experiment_id}/{run_id}/artifacts"),
        }
    }

    /// Reopen the run `run_id` on the server at `uri`, as it continues: RUNNING again.
    pub fn resume(uri: &str, run_id: &str) -> Result<Self, String> {
        let mut this = Self::client(uri)?;
        let url = reqwest::Url::parse_with_params(&this.url("runs/get"), &[("run_id", run_id)])
            .map_err(|e| format!("runs/get: {e}"))?;
        let resp = this
            .client
            .get(url)
            .send()
            .map_err(|e| format!("runs/get: {e}"))?;
        let found = Self::check(resp, "runs/get")?;
        let info = &found["run"]["info"];
        this.run_id = run_id.to_string();
        this.experiment_id = info["experiment_id"]
            .as_str()
            .ok_or("runs/get returned no experiment id")?
            .to_string();
        this.artifact_path = Self::artifact_path(info, &this.experiment_id, run_id);
        this.post(
            "runs/update",
            json!({"run_id": run_id, "status": "RUNNING"}),
        )?;
        Ok(this)
    }

    /// The run id on the server.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.base)
    }

    fn check(resp: reqwest::blocking::Response, what: &str) -> Result<Value, String> {
        let status = resp.status();
        let body = resp.text().unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "{what}: HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            ));
        }
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn post(&self, endpoint: &str, body: Value) -> Result<Value, String> {
        let resp = self
            .client
            .post(self.url(endpoint))
            .json(&body)
            .send()
            .map_err(|e| format!("{endpoint}: {e}"))?;
        Self::check(resp, endpoint)
    }

    fn get_or_create_experiment(&self, name: &str) -> Result<String, String> {
        let url = reqwest::Url::parse_with_params(
            &self.url("experiments/get-by-name"),
            &[("experiment_name", name)],
        )
        .map_err(|e| format!("experiments/get-by-name: {e}"))?;
        let resp = self
            .client
            .get(url)
            .send()
            .map_err(|e| format!("experiments/get-by-name: {e}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            let created = self.post("experiments/create", json!({ "name": name }))?;
            return created["experiment_id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| "experiments/create returned no id".to_string());
        }
        let found = Self::check(resp, "experiments/get-by-name")?;
        found["experiment"]["experiment_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "experiments/get-by-name returned no id".to_string())
    }

    /// Log metrics `(key, value, step, timestamp)`, params and tags in one request.
    pub fn log_batch(
        &self,
        metrics: &[(String, f64, u64, u64)],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), String> {
        let metrics: Vec<Value> = metrics
            .iter()
            .filter(|m| m.1.is_finite())
            .map(|(k, v, step, ts)| json!({"key": k, "value": v, "step": step, "timestamp": ts}))
            .collect();
        let params: Vec<Value> = params
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        self.post(
            "runs/log-batch",
            json!({"run_id": self.run_id, "metrics": metrics, "params": params, "tags": tags_json(tags)}),
        )
        .map(|_| ())
    }

    /// Set one tag.
    pub fn set_tag(&self, key: &str, value: &str) -> Result<(), String> {
        self.post(
            "runs/set-tag",
            json!({"run_id": self.run_id, "key": key, "value": value}),
        )
        .map(|_| ())
    }

    /// Upload a file to the run's artifacts (`[dir/]name`).
    pub fn log_artifact(&self, file: &Path, dir: Option<&str>) -> Result<(), String> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: no file name", file.display()))?;
        let rel = match dir {
            Some(d) => format!("{d}/{name}"),
            None => name.to_string(),
        };
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{rel}",
            self.base, self.artifact_path
        );
        let resp = self
            .client
            .put(url)
            .body(bytes)
            .send()
            .map_err(|e| format!("artifact upload: {e}"))?;
        Self::check(resp, "artifact upload").map(|_| ())
    }

    /// Mark the run ended.
    pub fn finish(&self, status: RunStatus) -> Result<(), String> {
        self.post(
            "runs/update",
            json!({"run_id": self.run_id, "status": status.mlflow_name(), "end_time": now_ms()}),
        )
        .map(|_| ())
    }
}
