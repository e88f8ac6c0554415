//! The S3 path against a real S3-compatible server on loopback: s3s-fs, which serves a folder
//! as buckets and checks SigV4 signatures. `.ci/run` installs it; elsewhere the test finds it
//! on PATH or through `FLOWMODELS_TEST_S3FS`, and is skipped (failing under `CI=true`) without.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flowdata::images::{
    Augment, EMBEDDED, ImageRoot, ImageSpec, OnBadImage, load_split, train_batch,
};
use flowdata::s3::{S3Config, S3Location};

const SPEC: ImageSpec = ImageSpec {
    channels: 1,
    height: 28,
    width: 28,
};
const KEY: &str = "flowmodels-test";
const SECRET: &str = "flowmodels-test-secret";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FLOWMODELS_TEST_S3FS") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    })
}

fn start(root: &Path) -> Option<Server> {
    let Some(bin) = s3s_fs() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must install s3s-fs (see .ci/run) or set FLOWMODELS_TEST_S3FS"
        );
        eprintln!(
            "skipped: s3s-fs not found (cargo install s3s-fs --version 0.14.1 --features binary)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY, "--secret-key", SECRET])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let server = Server { child, port };
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "s3s-fs did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

fn config(port: u16, secret: &str) -> S3Config {
    S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".into(),
        path_style: true,
        credentials: Some((KEY.into(), secret.into())),
    }
}

/// `root/<bucket>/images/{train,val}/<class>/*.png`: the first `per_class` embedded images
/// of each folder, and over 1000 objects in all so that listing needs several pages.
fn populate(root: &Path, bucket: &str, per_class: usize) -> PathBuf {
    let images = root.join(bucket).join("images");
    let mut counts = std::collections::HashMap::new();
    for (rel, bytes) in EMBEDDED {
        let folder = rel.rsplit_once('/').unwrap().0.to_string();
        let n = counts.entry(folder).or_insert(0);
        if *n < per_class {
            *n += 1;
            let path = images.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
    images
}

#[test]
fn s3_and_disk_give_the_same_batches_and_clear_errors() {
    let root = std::env::temp_dir().join(format!("flowdata-s3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let on_disk = populate(&root, "flows", 1200);
    let Some(server) = start(&root) else {
        return;
    };
    let s3 = ImageRoot::S3(
        S3Location::parse("s3://flows/images").unwrap(),
        config(server.port, SECRET),
    );
    let disk = ImageRoot::Disk(on_disk.clone());
    let from_s3 = load_split(&s3, "train", SPEC, OnBadImage::Stop).unwrap();
    let from_disk = load_split(&disk, "train", SPEC, OnBadImage::Stop).unwrap();
    assert_eq!(from_s3.len(), 1200, "all pages listed");
    assert_eq!(from_s3.pixels, from_disk.pixels);
    assert_eq!(from_s3.classes, from_disk.classes);
    assert!(from_s3.paths[0].starts_with("s3://flows/images/train/sneaker/"));
    let aug = Augment::default();
    assert_eq!(
        train_batch(&from_s3, &aug, 1, 7, 32),
        train_batch(&from_disk, &aug, 1, 7, 32)
    );
    let val = load_split(&s3, "val", SPEC, OnBadImage::Stop).unwrap();
    assert_eq!(val.class_names(), vec!["bag", "sneaker"]);

    // A folder of images directly: its own name is the class.
    let direct = flowdata::images::load_s3(
        &S3Location::parse("s3://flows/images/val/bag").unwrap(),
        &config(server.port, SECRET),
        SPEC,
        OnBadImage::Stop,
    )
    .unwrap();
    assert_eq!(direct.class_names(), vec!["bag"]);

    let missing = ImageRoot::S3(
        S3Location::parse("s3://no-such-bucket/images").unwrap(),
        config(server.port, SECRET),
    );
    let e = load_split(&missing, "train", SPEC, OnBadImage::Stop)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s3://no-such-bucket") && e.contains("does not exist"),
        "{e}"
    );

    let wrong = ImageRoot::S3(
        S3Location::parse("s3://flows/images").unwrap(),
        config(server.port, "not-the-secret"),
    );
    let e = load_split(&wrong, "train", SPEC, OnBadImage::Stop)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s3://flows/images") && e.contains("access denied"),
        "{e}"
    );

    let e = load_split(&s3, "test", SPEC, OnBadImage::Stop)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no `test/` folder"), "{e}");
    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}
