//! The deployment scripts: AWS Batch templates render into valid JSON naming the image, the
//! command and the resources; `submit.sh --dry-run` prints the AWS CLI calls; the Docker
//! entrypoint picks the app and turns a config from the environment into `--config`.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("bash runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const JOB_VALUES: [&str; 11] = [
    "JOB_DEFINITION_NAME=flowmodels-gpu",
    "IMAGE=123456789012.dkr.ecr.eu-west-1.amazonaws.com/flowmodels:gpu",
    "APP=train_flowmodels2",
    "JOB_ROLE_ARN=arn:aws:iam::123456789012:role/flowmodels-job",
    "VCPUS=8",
    "MEMORY_MIB=30000",
    "GPUS=1",
    "MLFLOW_TRACKING_URI=http://mlflow.internal:5000",
    "AWS_REGION=eu-west-1",
    "LOG_GROUP=/flowmodels",
    "TIMEOUT_SECONDS=86400",
];

#[test]
fn the_job_definition_renders_into_json_naming_image_command_and_resources() {
    let (ok, out, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/render.sh"))
        .arg(root().join("awsbatch/job-definition-gpu.json"))
        .args(JOB_VALUES));
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let c = &json["containerProperties"];
    assert_eq!(
        c["image"],
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/flowmodels:gpu"
    );
    assert_eq!(c["command"][0], "train_flowmodels2");
    let resources: Vec<(String, String)> = c["resourceRequirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap().into(),
                r["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        resources.contains(&("GPU".into(), "1".into())),
        "{resources:?}"
    );
    assert!(
        resources.contains(&("VCPU".into(), "8".into())),
        "{resources:?}"
    );
    assert_eq!(json["timeout"]["attemptDurationSeconds"], 86400);

    // A value with quotes stays valid JSON; a missing one is named.
    let mut values = JOB_VALUES.to_vec();
    values[3] = r#"JOB_ROLE_ARN=a "quoted" \ role"#;
    let (ok, out, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/render.sh"))
        .arg(root().join("awsbatch/job-definition-gpu.json"))
        .args(&values));
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(
        json["containerProperties"]["jobRoleArn"],
        r#"a "quoted" \ role"#
    );
    let (ok, _, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/render.sh"))
        .arg(root().join("awsbatch/job-definition-gpu.json"))
        .args(&JOB_VALUES[..10]));
    assert!(!ok && err.contains("${TIMEOUT_SECONDS}"), "{err}");
}

#[test]
fn every_template_renders_into_valid_json() {
    for (template, values) in [
        (
            "compute-environment.json",
            vec![
                "COMPUTE_ENVIRONMENT_NAME=fm",
                "MAX_VCPUS=64",
                "INSTANCE_TYPE=g5.2xlarge",
                "SUBNET_ID=subnet-1",
                "SECURITY_GROUP_ID=sg-1",
                "INSTANCE_PROFILE_ARN=arn:p",
                "BATCH_SERVICE_ROLE_ARN=arn:s",
            ],
        ),
        (
            "job-queue.json",
            vec!["JOB_QUEUE_NAME=q", "COMPUTE_ENVIRONMENT_NAME=fm"],
        ),
        (
            "iam-policy.json",
            vec![
                "DATA_BUCKET=data",
                "DATA_PREFIX=images/",
                "OUTPUT_BUCKET=out",
                "OUTPUT_PREFIX=runs/",
                "LOG_GROUP=/flowmodels",
            ],
        ),
    ] {
        let (ok, out, err) = run(Command::new("bash")
            .arg(root().join("awsbatch/render.sh"))
            .arg(root().join("awsbatch").join(template))
            .args(values));
        assert!(ok, "{template}: {err}");
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap_or_else(|e| panic!("{template} renders into invalid JSON: {e}\n{out}"));
    }
}

#[test]
fn submit_dry_run_prints_the_aws_calls() {
    let dir = std::env::temp_dir().join(format!("flowtests-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let params = dir.join("params.toml");
    std::fs::write(&params, "[training]\nepochs = 3\n").unwrap();
    let mut args: Vec<String> = [
        "--app",
        "train_flowmodels2",
        "--data",
        "s3://bucket/images",
        "--queue",
        "gpu-queue",
        "--job-definition",
        "flowmodels-gpu",
        "--name",
        "job1",
        "--dry-run",
        "--image",
        "repo/flowmodels:gpu",
    ]
    .map(String::from)
    .to_vec();
    args.push("--params".into());
    args.push(params.display().to_string());
    for v in &JOB_VALUES[3..] {
        args.push("--set".into());
        args.push(v.to_string());
    }
    let (ok, out, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/submit.sh"))
        .args(&args));
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("aws batch register-job-definition --cli-input-json"),
        "{out}"
    );
    assert!(lines[0].contains("repo/flowmodels:gpu"), "{out}");
    assert!(
        lines[1].starts_with("aws batch submit-job --job-name job1 --job-queue gpu-queue --job-definition flowmodels-gpu"),
        "{out}"
    );
    // The overrides carry the app, the data and the params (base64 of the file).
    assert!(lines[1].contains("s3://bucket/images"), "{out}");
    assert!(
        lines[1].contains("W3RyYWluaW5nXQplcG9jaHMgPSAzCg=="),
        "{out}"
    );
    let (ok, _, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/submit.sh"))
        .args([
            "--app",
            "train_flowmodels10",
            "--queue",
            "q",
            "--job-definition",
            "d",
        ]));
    assert!(
        !ok && err.contains("train_flowmodels1 ... train_flowmodels9"),
        "{err}"
    );
    let (ok, _, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/submit.sh"))
        .args(["--app", "train_flowmodels2"]));
    assert!(
        !ok && err.contains("--queue") && err.contains("--job-definition"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_entrypoint_picks_the_app_and_passes_the_config() {
    // Fake apps on PATH that print how they were called.
    let dir = std::env::temp_dir().join(format!("flowtests-entry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for app in ["train_flowmodels2", "train_flowmodels5"] {
        let p = dir.join(app);
        std::fs::write(&p, format!("#!/bin/sh\necho {app} \"$@\"\nif [ \"$2\" = --config ] || [ \"$3\" = --config ]; then cat \"${{@: -1}}\" 2>/dev/null || true; fi\n")).unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&p)
            .status()
            .unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let entry = root().join("docker/entrypoint.sh");
    let (ok, out, _) = run(Command::new("sh")
        .arg(&entry)
        .env("PATH", &path)
        .args(["--epochs", "2"]));
    assert!(
        ok && out.starts_with("train_flowmodels2 --epochs 2"),
        "{out}"
    );
    let (ok, out, _) = run(Command::new("sh")
        .arg(&entry)
        .env("PATH", &path)
        .env("TRAINING_APP", "train_flowmodels5")
        .arg("--method"));
    assert!(ok && out.starts_with("train_flowmodels5 --method"), "{out}");
    let (ok, out, _) = run(Command::new("sh")
        .arg(&entry)
        .env("PATH", &path)
        .env("FLOWMODELS_CONFIG_B64", "W3RyYWluaW5nXQplcG9jaHMgPSAzCg==")
        .args(["train_flowmodels5"]));
    assert!(
        ok && out.starts_with("train_flowmodels5 --config /tmp/flowmodels-config."),
        "{out}"
    );
    // mpi-run: the launcher, with the app and the config at a path every node writes alike.
    std::fs::write(
        dir.join("flowmodels-mpi-run"),
        "#!/bin/sh\necho mpi-run \"$@\"\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(dir.join("flowmodels-mpi-run"))
        .status()
        .unwrap();
    let (ok, out, _) = run(Command::new("sh")
        .arg(&entry)
        .env("PATH", &path)
        .env("HOME", &dir)
        .env("FLOWMODELS_CONFIG_B64", "W3RyYWluaW5nXQplcG9jaHMgPSAzCg==")
        .args(["mpi-run", "train_flowmodels2", "--epochs", "2"]));
    let config = dir.join(".flowmodels-mpi/config.toml");
    assert!(
        ok && out.trim_end()
            == format!(
                "mpi-run train_flowmodels2 --epochs 2 --config {}",
                config.display()
            ),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "[training]\nepochs = 3\n"
    );
    let (ok, _, err) = run(Command::new("sh")
        .arg(&entry)
        .env("PATH", &path)
        .env("TRAINING_APP", "rm"));
    assert!(!ok && err.contains("unknown app 'rm'"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_multinode_job_definition_runs_mpi_across_the_nodes() {
    let mut values: Vec<&str> = JOB_VALUES.to_vec();
    values.extend(["NUM_NODES=4", "DEVICE=cuda"]);
    let (ok, out, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/render.sh"))
        .arg(root().join("awsbatch/job-definition-multinode.json"))
        .args(&values));
    assert!(ok, "{err}");
    let job: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["type"], "multinode");
    assert_eq!(job["nodeProperties"]["numNodes"], 4);
    let container = &job["nodeProperties"]["nodeRangeProperties"][0]["container"];
    assert_eq!(
        container["command"],
        serde_json::json!(["mpi-run", "train_flowmodels2", "--device", "cuda"])
    );
    assert_eq!(
        container["image"],
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/flowmodels:gpu"
    );
    let gpus = container["resourceRequirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "GPU")
        .unwrap();
    assert_eq!(gpus["value"], "1");

    // submit --nodes registers it and overrides the command on every node.
    let mut args: Vec<String> = [
        "--app",
        "train_flowmodels2",
        "--queue",
        "q",
        "--job-definition",
        "flowmodels-mnp",
        "--name",
        "job2",
        "--nodes",
        "4",
        "--dry-run",
        "--image",
        "repo/flowmodels:gpu",
    ]
    .map(String::from)
    .to_vec();
    for v in JOB_VALUES[3..].iter().chain(&["DEVICE=cuda"]) {
        args.push("--set".into());
        args.push(v.to_string());
    }
    let (ok, out, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/submit.sh"))
        .args(&args));
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("multinode"), "{out}");
    assert!(lines[1].contains("--node-overrides"), "{out}");
    assert!(
        lines[1].contains("numNodes\\\":4") || lines[1].contains("numNodes\":4"),
        "{out}"
    );
    assert!(lines[1].contains("mpi-run"), "{out}");
    let (ok, _, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/submit.sh"))
        .args([
            "--app",
            "train_flowmodels5",
            "--queue",
            "q",
            "--job-definition",
            "d",
        ])
        .args(["--nodes", "2", "--dry-run"]));
    assert!(!ok && err.contains("train_flowmodels1, 2 and 9"), "{err}");
}

#[test]
fn mpi_run_starts_mpirun_with_the_app_as_every_rank() {
    let dir = std::env::temp_dir().join(format!("flowtests-mpirun-{}", std::process::id()));
    let (ok, out, err) = run(Command::new("bash")
        .arg(root().join("docker/mpi-run.sh"))
        .env("FLOWMODELS_MPI_DIR", &dir)
        .env("FLOWMODELS_MPI_DRY_RUN", "1")
        .env("FLOWMODELS_RANKS_PER_NODE", "2")
        .env("MLFLOW_TRACKING_URI", "http://mlflow:5000")
        .args(["train_flowmodels2", "--epochs", "3"]));
    assert!(ok, "{err}");
    assert!(out.starts_with("mpirun --hostfile"), "{out}");
    assert!(out.contains(" -np 2 "), "{out}");
    assert!(out.contains("-x MLFLOW_TRACKING_URI"), "{out}");
    assert!(
        out.trim_end()
            .ends_with("train_flowmodels2 --distributed mpi --epochs 3"),
        "{out}"
    );
    let hostfile = std::fs::read_to_string(dir.join("hostfile")).unwrap();
    assert_eq!(hostfile.trim(), "localhost slots=2");
    // On GPUs the gradients go over NCCL, unless the job says otherwise; a bad choice is refused.
    let launch = |distributed: Option<&str>| {
        let mut c = Command::new("bash");
        c.arg(root().join("docker/mpi-run.sh"))
            .env("FLOWMODELS_MPI_DIR", &dir)
            .env("FLOWMODELS_MPI_DRY_RUN", "1")
            .env("FLOWMODELS_RANKS_PER_NODE", "2")
            .args(["train_flowmodels2", "--device", "cuda:local"]);
        if let Some(d) = distributed {
            c.env("FLOWMODELS_DISTRIBUTED", d);
        }
        run(&mut c)
    };
    let (ok, out, err) = launch(None);
    assert!(ok, "{err}");
    assert!(
        out.trim_end()
            .ends_with("train_flowmodels2 --distributed nccl --device cuda:local"),
        "{out}"
    );
    let (ok, out, err) = launch(Some("mpi"));
    assert!(
        ok && out.contains("--distributed mpi --device cuda:local"),
        "{out}{err}"
    );
    let (ok, _, err) = launch(Some("gloo"));
    assert!(!ok && err.contains("expected mpi or nccl"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_entrypoint_and_submit_take_every_app_there_is() {
    // An app the scripts never heard of, as a later one would be: the entrypoint runs any
    // train_flowmodelsN on PATH, and names what the image has when the app is not there.
    let dir = std::env::temp_dir().join(format!("flowtests-anyapp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for app in ["train_flowmodels3", "train_flowmodels12", "bench"] {
        let p = dir.join(app);
        std::fs::write(&p, format!("#!/bin/sh\necho {app} \"$@\"\n")).unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", dir.display());
    let entry = root().join("docker/entrypoint.sh");
    for app in ["train_flowmodels12", "bench"] {
        let (ok, out, err) = run(Command::new("sh")
            .arg(&entry)
            .env("PATH", &path)
            .args([app, "--epochs", "1"]));
        assert!(
            ok && out.starts_with(&format!("{app} --epochs 1")),
            "{out}{err}"
        );
    }
    let (ok, _, err) = run(Command::new("sh")
        .arg(&entry)
        .env("PATH", &path)
        .arg("train_flowmodels9"));
    assert!(
        !ok && err.contains("unknown app 'train_flowmodels9'")
            && err.contains("train_flowmodels3 ... train_flowmodels12, bench"),
        "{err}"
    );
    // submit.sh knows the apps of the repository from apps/src/bin, and the bench.
    let bins: Vec<u32> = std::fs::read_dir(root().join("apps/src/bin"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("train_flowmodels")?
                .strip_suffix(".rs")?
                .parse()
                .ok()
        })
        .collect();
    let last = bins.iter().max().unwrap();
    for app in [format!("train_flowmodels{last}"), "bench".to_string()] {
        let (ok, out, err) = run(Command::new("bash")
            .arg(root().join("awsbatch/submit.sh"))
            .args(["--app", &app, "--queue", "q", "--job-definition", "d"])
            .arg("--dry-run"));
        assert!(ok && out.contains(&format!("\\\"{app}\\\"")), "{out}{err}");
    }
    let (ok, _, err) = run(Command::new("bash")
        .arg(root().join("awsbatch/submit.sh"))
        .args(["--app", &format!("train_flowmodels{}", last + 1)])
        .args(["--queue", "q", "--job-definition", "d"]));
    assert!(
        !ok && err.contains(&format!(
            "train_flowmodels1 ... train_flowmodels{last}, bench"
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
