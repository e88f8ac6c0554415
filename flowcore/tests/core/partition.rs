//! Partition validation: sizes add up, and every error names the side and block at fault.

use flowcore::{Block, FlowError, Partition, Role, Side};

fn err(s: &str) -> String {
    match s.parse::<Partition>() {
        Ok(p) => panic!("`{s}` parsed as {p}"),
        Err(FlowError::Partition(msg)) => msg,
        Err(other) => panic!("wrong error kind: {other}"),
    }
}

#[test]
fn parses_the_roadmap_examples() {
    let p: Partition = "[x:4 | pad:2] -> [y:2 | z:4]".parse().unwrap();
    assert_eq!(p.dim(), 6);
    assert_eq!(p.range(Side::Input, "pad").unwrap(), 4..6);
    assert_eq!(p.range(Side::Output, "z").unwrap(), 2..6);
    assert_eq!(p.role_size(Side::Output, Role::Latent), 4);
    assert_eq!(p.to_string(), "[x:4 | pad:2] -> [y:2 | z:4]");

    let noisy: Partition = "[x:3 | eps:5] -> [y:6 | z:2]".parse().unwrap();
    assert_eq!(noisy.role_size(Side::Input, Role::Noise), 5);

    let named: Partition = "[theta:3:data] -> [obs:1:observation | z:2]"
        .parse()
        .unwrap();
    assert_eq!(named.range(Side::Output, "obs").unwrap(), 0..1);
    assert_eq!(Partition::dense(3).unwrap().to_string(), "[x:3] -> [z:3]");
}

#[test]
fn sizes_that_do_not_add_up_name_both_sides() {
    let msg = err("[x:4 | pad:2] -> [y:2 | z:3]");
    assert!(msg.contains("input side [x:4 | pad:2] has 6"), "{msg}");
    assert!(msg.contains("output side [y:2 | z:3] has 5"), "{msg}");
    assert!(msg.contains("add latent dimensions"), "{msg}");
    // Padding may stand on either side (Ardizzone et al. pad both to one width).
    let both: Partition = "[x:4 | pad:2] -> [y:2 | z:2 | pad:2]".parse().unwrap();
    assert_eq!(both.role_size(Side::Output, Role::Pad), 2);
    let msg = err("[x:2] -> [y:2 | z:2]");
    assert!(msg.contains("add a pad block"), "{msg}");
}

#[test]
fn bad_blocks_are_named() {
    assert!(err("[x:0] -> [z:0]").contains("block `x` has size 0"));
    assert!(err("[x:2 | x:1] -> [z:3]").contains("`x` appears twice"));
    assert!(
        err("[x:2] -> [z:1 | eps:1]")
            .contains("block `eps` is a noise block, which belongs on the input side")
    );
    assert!(
        err("[x:2 | y:1] -> [z:3]")
            .contains("block `y` is an observation block, which belongs on the output side")
    );
    assert!(err("[pad:2] -> [z:2]").contains("needs at least one data block"));
    assert!(err("[x:2] -> [y:2]").contains("needs at least one latent block"));
    assert!(err("[x:two] -> [z:2]").contains("block `x:two`"));
    assert!(err("[q:2] -> [z:2]").contains("give its role as `q:2:ROLE`"));
    assert!(err("[q:2:blue] -> [z:2]").contains("unknown role `blue`"));
    assert!(err("x:2 -> [z:2]").contains("enclosed in [ ]"));
    assert!(err("[x:2] [z:2]").contains("no `->`"));
}

#[test]
fn range_of_a_missing_block_is_an_error() {
    let p = Partition::dense(2).unwrap();
    let e = p.range(Side::Output, "y").unwrap_err().to_string();
    assert!(e.contains("no block named `y`"), "{e}");
}

#[test]
fn deserializing_validates() {
    #[derive(serde::Deserialize)]
    struct Cfg {
        #[allow(dead_code)]
        partition: Partition,
    }
    let good = r#"{"partition": {"input": [{"name": "x", "size": 2, "role": "data"}],
                   "output": [{"name": "z", "size": 2, "role": "latent"}]}}"#;
    serde_json::from_str::<Cfg>(good).unwrap();
    let bad = good.replace(
        "\"size\": 2, \"role\": \"latent\"",
        "\"size\": 3, \"role\": \"latent\"",
    );
    let e = serde_json::from_str::<Cfg>(&bad).err().unwrap().to_string();
    assert!(e.contains("same size"), "{e}");
    let p = Partition::new(
        vec![Block::new("x", 1, Role::Data)],
        vec![Block::new("z", 1, Role::Latent)],
    )
    .unwrap();
    assert_eq!(serde_json::to_value(&p).unwrap()["input"][0]["name"], "x");
}
