//! The two sides of an invertible network: which input dimensions are data, padding or noise,
//! and which output dimensions are observations (labels) or Gaussian latent.
//!
//! Written `[x:4 | pad:2] -> [y:2 | z:4]`: blocks in order, `name:size` or `name:size:role`.
//! The well-known names `x`, `pad`, `eps`, `y` and `z` imply their role.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{FlowError, Result};

/// What a block of dimensions holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Input data `x`.
    Data,
    /// Zero padding that makes both sides the same size.
    Pad,
    /// Noise on the input side (`eps`), for a noisy forward model.
    Noise,
    /// Observations or labels `y` on the output side.
    Observation,
    /// Gaussian latent `z` on the output side.
    Latent,
}

impl Role {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "x" => Some(Self::Data),
            "pad" => Some(Self::Pad),
            "eps" | "noise" => Some(Self::Noise),
            "y" => Some(Self::Observation),
            "z" => Some(Self::Latent),
            _ => None,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "data" => Some(Self::Data),
            "pad" => Some(Self::Pad),
            "noise" => Some(Self::Noise),
            "observation" | "label" => Some(Self::Observation),
            "latent" => Some(Self::Latent),
            _ => None,
        }
    }

    /// The side a block of this role belongs on; `None` for padding, which either side may
    /// have (Ardizzone et al. pad both sides up to one width).
    fn side(self) -> Option<Side> {
        match self {
            Self::Data | Self::Noise => Some(Side::Input),
            Self::Observation | Self::Latent => Some(Side::Output),
            Self::Pad => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Pad => "pad",
            Self::Noise => "noise",
            Self::Observation => "observation",
            Self::Latent => "latent",
        }
    }
}

/// A named, contiguous block of dimensions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Name, unique on its side.
    pub name: String,
    /// Number of dimensions.
    pub size: usize,
    /// What it holds.
    pub role: Role,
}

impl Block {
    /// A block.
    pub fn new(name: impl Into<String>, size: usize, role: Role) -> Self {
        Self {
            name: name.into(),
            size,
            role,
        }
    }
}

/// Which side of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The data side (`forward` input).
    Input,
    /// The latent side (`forward` output).
    Output,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Input => "input",
            Self::Output => "output",
        })
    }
}

/// The validated partition of both sides; both have the same total size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PartitionBlocks", into = "PartitionBlocks")]
pub struct Partition {
    input: Vec<Block>,
    output: Vec<Block>,
}

/// The unvalidated form, as written in configs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionBlocks {
    /// Input-side blocks in order.
    pub input: Vec<Block>,
    /// Output-side blocks in order.
    pub output: Vec<Block>,
}

impl TryFrom<PartitionBlocks> for Partition {
    type Error = FlowError;
    fn try_from(p: PartitionBlocks) -> Result<Self> {
        Partition::new(p.input, p.output)
    }
}

impl From<Partition> for PartitionBlocks {
    fn from(p: Partition) -> Self {
        Self {
            input: p.input,
            output: p.output,
        }
    }
}

impl Partition {
    /// Check and make a partition. Errors name the side and the block at fault.
    pub fn new(input: Vec<Block>, output: Vec<Block>) -> Result<Self> {
        check_side(Side::Input, &input)?;
        check_side(Side::Output, &output)?;
        let (n_in, n_out) = (total(&input), total(&output));
        if n_in != n_out {
            let (bigger, smaller) = if n_in > n_out {
                (Side::Input, Side::Output)
            } else {
                (Side::Output, Side::Input)
            };
            let hint = if n_in > n_out {
                "add latent dimensions or a pad block to the output"
            } else {
                "add a pad block to the input"
            };
            return Err(FlowError::Partition(format!(
                "the two sides must have the same size, but the {bigger} side {} has {} dimensions \
                 and the {smaller} side {} has {}; {hint}",
                describe(if n_in > n_out { &input } else { &output }),
                n_in.max(n_out),
                describe(if n_in > n_out { &output } else { &input }),
                n_in.min(n_out),
            )));
        }
        Ok(Self { input, output })
    }

    /// `[x:dim] -> [z:dim]`: a plain density model.
    pub fn dense(dim: usize) -> Result<Self> {
        Self::new(
            vec![Block::new("x", dim, Role::Data)],
            vec![Block::new("z", dim, Role::Latent)],
        )
    }

    /// Total dimensions of either side.
    pub fn dim(&self) -> usize {
        total(&self.input)
    }

    /// The blocks of one side.
    pub fn blocks(&self, side: Side) -> &[Block] {
        match side {
            Side::Input => &self.input,
            Side::Output => &self.output,
        }
    }

    /// The column range of a named block.
    pub fn range(&self, side: Side, name: &str) -> Result<Range<usize>> {
        let mut start = 0;
        for b in self.blocks(side) {
            if b.name == name {
                return Ok(start..start + b.size);
            }
            start += b.size;
        }
        Err(FlowError::Partition(format!(
            "the {side} side {} has no block named `{name}`",
            describe(self.blocks(side))
        )))
    }

    /// The columns of a named block of a `[batch, dim]` tensor of that side.
    pub fn take(&self, side: Side, name: &str, t: Tensor<2>) -> Result<Tensor<2>> {
        let r = self.range(side, name)?;
        Ok(t.narrow(1, r.start, r.len()))
    }

    /// The blocks of one role on one side, as column ranges, in order.
    pub fn ranges(&self, side: Side, role: Role) -> Vec<Range<usize>> {
        let mut start = 0;
        let mut out = Vec::new();
        for b in self.blocks(side) {
            if b.role == role {
                out.push(start..start + b.size);
            }
            start += b.size;
        }
        out
    }

    /// The columns of every block of `role` on `side` of a `[batch, dim]` tensor, in order:
    /// `[batch, role_size]`, or `None` when the side has no such block.
    pub fn gather(&self, side: Side, role: Role, t: &Tensor<2>) -> Option<Tensor<2>> {
        let parts: Vec<Tensor<2>> = self
            .ranges(side, role)
            .into_iter()
            .map(|r| t.clone().narrow(1, r.start, r.len()))
            .collect();
        (!parts.is_empty()).then(|| Tensor::cat(parts, 1))
    }

    /// A `[batch, dim]` tensor of one side from the columns of each role, in block order:
    /// `fill(role)` gives `[batch, role_size]` for every role the side has, and the blocks of
    /// that role take its columns in turn.
    pub fn assemble(&self, side: Side, mut fill: impl FnMut(Role) -> Tensor<2>) -> Tensor<2> {
        let mut given: Vec<(Role, Tensor<2>, usize)> = Vec::new();
        let mut parts = Vec::new();
        for b in self.blocks(side) {
            let i = match given.iter().position(|(r, _, _)| *r == b.role) {
                Some(i) => i,
                None => {
                    given.push((b.role, fill(b.role), 0));
                    given.len() - 1
                }
            };
            let (_, t, used) = &mut given[i];
            parts.push(t.clone().narrow(1, *used, b.size));
            *used += b.size;
        }
        Tensor::cat(parts, 1)
    }

    /// Total size of the blocks of one role on one side.
    pub fn role_size(&self, side: Side, role: Role) -> usize {
        self.blocks(side)
            .iter()
            .filter(|b| b.role == role)
            .map(|b| b.size)
            .sum()
    }
}

fn total(blocks: &[Block]) -> usize {
    blocks.iter().map(|b| b.size).sum()
}

fn describe(blocks: &[Block]) -> String {
    let parts: Vec<String> = blocks
        .iter()
        .map(|b| format!("{}:{}", b.name, b.size))
        .collect();
    format!("[{}]", parts.join(" | "))
}

fn check_side(side: Side, blocks: &[Block]) -> Result<()> {
    let err = |msg: String| {
        Err(FlowError::Partition(format!(
            "{side} side {}: {msg}",
            describe(blocks)
        )))
    };
    if blocks.is_empty() {
        return err("has no blocks".into());
    }
    for (i, b) in blocks.iter().enumerate() {
        if b.name.is_empty() {
            return err(format!("block {i} has no name"));
        }
        if b.size == 0 {
            return err(format!("block `{}` has size 0", b.name));
        }
        if blocks[..i].iter().any(|o| o.name == b.name) {
            return err(format!("block name `{}` appears twice", b.name));
        }
        if let Some(home) = b.role.side()
            && home != side
        {
            let role = b.role.as_str();
            let article = if role.starts_with('o') { "an" } else { "a" };
            return err(format!(
                "block `{}` is {article} {role} block, which belongs on the {home} side",
                b.name,
            ));
        }
    }
    let needed = if side == Side::Input {
        Role::Data
    } else {
        Role::Latent
    };
    if !blocks.iter().any(|b| b.role == needed) {
        return err(format!("needs at least one {} block", needed.as_str()));
    }
    Ok(())
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", describe(&self.input), describe(&self.output))
    }
}

impl FromStr for Partition {
    type Err = FlowError;

    fn from_str(s: &str) -> Result<Self> {
        let (lhs, rhs) = s.split_once("->").ok_or_else(|| {
            FlowError::Partition(format!(
                "`{s}` is not of the form `[x:4 | pad:2] -> [y:2 | z:4]` (no `->`)"
            ))
        })?;
        Self::new(parse_side(lhs)?, parse_side(rhs)?)
    }
}

fn parse_side(s: &str) -> Result<Vec<Block>> {
    let s = s.trim();
    let inner = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| FlowError::Partition(format!("`{s}` must be enclosed in [ ]")))?;
    inner
        .split('|')
        .map(|part| {
            let part = part.trim();
            let fields: Vec<&str> = part.split(':').map(str::trim).collect();
            let bad = || {
                FlowError::Partition(format!(
                    "block `{part}` must be `name:size` or `name:size:role`"
                ))
            };
            let (name, size) = match fields.as_slice() {
                [name, size] | [name, size, _] => {
                    (*name, size.parse::<usize>().map_err(|_| bad())?)
                }
                _ => return Err(bad()),
            };
            let role = match fields.get(2) {
                Some(r) => Role::parse(r).ok_or_else(|| {
                    FlowError::Partition(format!(
                        "block `{part}`: unknown role `{r}` (data, pad, noise, observation, latent)"
                    ))
                })?,
                None => Role::from_name(name).ok_or_else(|| {
                    FlowError::Partition(format!(
                        "block `{part}`: give its role as `{name}:{size}:ROLE`, since only x, pad, \
                         eps, y and z imply one"
                    ))
                })?,
            };
            Ok(Block::new(name, size, role))
        })
        .collect()
}
