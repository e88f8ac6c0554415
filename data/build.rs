//! Embeds the default image sets (`default/<set>/{train,val}/<class>/*.png`) into the library
//! as tables of `(relative path, bytes)`, so the default runs need no files.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn pngs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            pngs(&p, out);
        } else if p.extension().is_some_and(|e| e == "png") {
            out.push(p);
        }
    }
}

/// Writes `OUT_DIR/<out>`: a table of every PNG under `default/<set>/{train,val}/`.
fn embed(set: &str, out: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("default")
        .join(set);
    println!("cargo::rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    for split in ["train", "val"] {
        println!("cargo::rerun-if-changed={}", root.join(split).display());
        pngs(&root.join(split), &mut files);
    }
    let mut code = String::from("&[\n");
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .expect("under root")
            .to_string_lossy()
            .replace('\\', "/");
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            f.display().to_string()
        )
        .unwrap();
    }
    code.push_str("]\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join(out);
    std::fs::write(out, code).expect("write the embedded table");
}

fn main() {
    embed("fashion-mnist", "embedded_images.rs");
    embed("fashion-mnist-classes", "embedded_classes.rs");
}
