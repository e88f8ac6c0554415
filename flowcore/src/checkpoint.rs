//! Checkpoints: one safetensors file holding every parameter by its module path, with a JSON
//! header in the safetensors metadata (key `flowmodels`) that names the format version, the
//! architecture config (permutation seeds included) and the data-initialisation flags.
//!
//! Files are written to a temporary file beside the target and renamed, so a crash never
//! leaves a half-written checkpoint under the real name.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::tensor::{DType, TensorCreationOptions, TensorData};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::arch::ArchitectureConfig;
use crate::base::BaseConfig;
use crate::flow::Flow;
use crate::io::write_atomic;
use crate::{FlowError, Result};

/// The checkpoint format this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The safetensors metadata key of the header.
pub const HEADER_KEY: &str = "flowmodels";

/// The safetensors metadata key of the parameter ids (JSON, path to id). Optimizer state is
/// keyed by parameter id, so a resumed run needs the ids its optimizer state was saved with.
pub const PARAM_IDS_KEY: &str = "flowmodels.param_ids";

/// The JSON header of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The architecture, enough to rebuild the model.
    pub architecture: ArchitectureConfig,
    /// Whether each data-initialised layer (ActNorm) was initialised, in traversal order.
    pub init_flags: Vec<bool>,
    /// The base distribution (checkpoints without the key have a standard-normal base).
    #[serde(default)]
    pub base: BaseConfig,
    /// Anything the caller adds (training state, metrics).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// Save a flow with `extra` in its header.
pub fn save_flow(flow: &Flow, path: &Path, extra: serde_json::Value) -> Result<()> {
    write_atomic(path, &flow_to_bytes(flow, path, extra)?)
}

/// A flow as the bytes of its checkpoint file (what [`save_flow`] writes), e.g. to send it to
/// other processes; `origin` names it in errors.
pub fn flow_to_bytes(flow: &Flow, origin: &Path, extra: serde_json::Value) -> Result<Vec<u8>> {
    let header = CheckpointHeader {
        format_version: FORMAT_VERSION,
        architecture: flow.config().clone(),
        init_flags: flow.init_flags(),
        base: flow.base().clone(),
        extra,
    };
    let json = serde_json::to_string(&header)
        .map_err(|e| FlowError::checkpoint(origin, format!("cannot encode the header: {e}")))?;
    // `valid` merges the running statistics a training pass left pending (batch normalisation
    // updates them per thread, and a plain read sees the value of one update before).
    module_to_bytes(
        &flow.valid(),
        origin,
        HashMap::from([(HEADER_KEY.to_string(), json)]),
    )
}

/// Load a flow and its header; the model is rebuilt from the header's architecture.
pub fn load_flow(path: &Path, device: &Device) -> Result<(Flow, CheckpointHeader)> {
    flow_from_bytes(&read(path)?, path, device)
}

/// A flow from the bytes of its checkpoint file; `path` names them in errors.
pub fn flow_from_bytes(
    bytes: &[u8],
    path: &Path,
    device: &Device,
) -> Result<(Flow, CheckpointHeader)> {
    let header = read_header(path, bytes)?;
    let mut flow = Flow::with_base(
        header.architecture.clone(),
        header.base.clone(),
        None,
        device,
    )
    .map_err(|e| FlowError::checkpoint(path, format!("its architecture cannot be built: {e}")))?;
    let expected = flow.init_flags().len();
    if header.init_flags.len() != expected {
        return Err(FlowError::checkpoint(
            path,
            format!(
                "the header lists {} initialisation flags but the model has {expected} \
                 data-initialised layers",
                header.init_flags.len()
            ),
        ));
    }
    flow.set_init_flags(&header.init_flags);
    let flow = assign(flow, path, bytes)?;
    Ok((flow, header))
}

/// Load a flow that must have the given architecture, e.g. to resume a run whose config is
/// known. Another architecture is an error that says what differs.
pub fn load_flow_expecting(
    path: &Path,
    expected: &ArchitectureConfig,
    device: &Device,
) -> Result<(Flow, CheckpointHeader)> {
    let bytes = read(path)?;
    let header = read_header(path, &bytes)?;
    if &header.architecture != expected {
        return Err(FlowError::checkpoint(
            path,
            describe_mismatch(&header.architecture, expected),
        ));
    }
    flow_from_bytes(&bytes, path, device)
}

/// Read only the header.
pub fn read_checkpoint_header(path: &Path) -> Result<CheckpointHeader> {
    read_header(path, &read(path)?)
}

fn describe_mismatch(found: &ArchitectureConfig, expected: &ArchitectureConfig) -> String {
    if found.kind() != expected.kind() {
        return format!(
            "it holds a `{}` model but a `{}` model was expected",
            found.kind(),
            expected.kind()
        );
    }
    let (f, e) = (
        serde_json::to_value(found).unwrap_or_default(),
        serde_json::to_value(expected).unwrap_or_default(),
    );
    let mut diffs = Vec::new();
    if let (Some(f), Some(e)) = (f.as_object(), e.as_object()) {
        let mut keys: Vec<&String> = f.keys().chain(e.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if f.get(k) != e.get(k) {
                let show =
                    |v: Option<&serde_json::Value>| v.map_or("absent".into(), |v| v.to_string());
                diffs.push(format!(
                    "`{k}` is {} in the file but {} was expected",
                    show(f.get(k)),
                    show(e.get(k))
                ));
            }
        }
    }
    format!(
        "it holds a `{}` model with another configuration: {}",
        found.kind(),
        diffs.join("; ")
    )
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| FlowError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_header(path: &Path, bytes: &[u8]) -> Result<CheckpointHeader> {
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| {
        FlowError::checkpoint(path, format!("not a safetensors file, or truncated: {e}"))
    })?;
    let json = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(HEADER_KEY))
        .ok_or_else(|| {
            FlowError::checkpoint(
                path,
                format!("not a flowmodels checkpoint (no `{HEADER_KEY}` header)"),
            )
        })?;
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| FlowError::checkpoint(path, format!("the header is not valid JSON: {e}")))?;
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| FlowError::checkpoint(path, "the header has no format_version"))?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(FlowError::checkpoint(
            path,
            format!(
                "format version {version} is newer than this build reads ({FORMAT_VERSION}); \
                 upgrade flowmodels to load it"
            ),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| FlowError::checkpoint(path, format!("the header does not parse: {e}")))
}

/// Write every float parameter of `module`, named by its module path, with `metadata`, to
/// `path` atomically.
pub fn save_module<M: Module>(
    module: &M,
    path: &Path,
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_atomic(path, &module_to_bytes(module, path, metadata)?)
}

fn module_to_bytes<M: Module>(
    module: &M,
    path: &Path,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut collect = Collect::default();
    module.visit(&mut collect);
    if let Some(name) = collect.non_finite {
        return Err(FlowError::checkpoint(
            path,
            format!("not written: tensor `{name}` holds non-finite values (NaN or infinity)"),
        ));
    }
    let mut metadata = metadata;
    let ids: serde_json::Map<String, serde_json::Value> = collect
        .tensors
        .iter()
        .zip(&collect.ids)
        .map(|((name, ..), id)| (name.clone(), serde_json::Value::from(id.to_string())))
        .collect();
    metadata.insert(
        PARAM_IDS_KEY.to_string(),
        serde_json::Value::Object(ids).to_string(),
    );
    let views = collect
        .tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| FlowError::checkpoint(path, format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| FlowError::checkpoint(path, format!("cannot encode: {e}")))
}

/// Load the parameters of `module` from a file written by [`save_module`]. Every parameter
/// must be present with its shape, and the file must hold no others.
pub fn load_module<M: Module>(module: M, path: &Path) -> Result<M> {
    let bytes = read(path)?;
    assign(module, path, &bytes)
}

fn assign<M: Module>(module: M, path: &Path, bytes: &[u8]) -> Result<M> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| {
        FlowError::checkpoint(path, format!("not a safetensors file, or truncated: {e}"))
    })?;
    let ids = SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().as_ref()?.get(PARAM_IDS_KEY).cloned())
        .and_then(|json| serde_json::from_str::<HashMap<String, String>>(&json).ok())
        .unwrap_or_default();
    let mut mapper = Assign {
        path: Vec::new(),
        tensors: &tensors,
        ids,
        error: None,
        used: 0,
    };
    let module = module.map(&mut mapper);
    if let Some(reason) = mapper.error {
        return Err(FlowError::checkpoint(path, reason));
    }
    let in_file = tensors.names().len();
    if mapper.used != in_file {
        return Err(FlowError::checkpoint(
            path,
            format!(
                "it holds {in_file} tensors but the model has {}: it was written for another model",
                mapper.used
            ),
        ));
    }
    Ok(module)
}

#[derive(Default)]
struct Collect {
    path: Vec<String>,
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    ids: Vec<u64>,
    /// The first tensor with a non-finite value: nothing non-finite is ever saved.
    non_finite: Option<String>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let (dtype, bytes, finite) = if tensor.dtype() == DType::F64 {
            let data = tensor.to_data().convert::<f64>();
            let values = data.as_slice::<f64>().expect("f64 data");
            (
                Dtype::F64,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                values.iter().all(|v| v.is_finite()),
            )
        } else {
            let data = tensor.to_data().convert::<f32>();
            let values = data.as_slice::<f32>().expect("f32 data");
            (
                Dtype::F32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                values.iter().all(|v| v.is_finite()),
            )
        };
        let name = self.path.join(".");
        if !finite && self.non_finite.is_none() {
            self.non_finite = Some(name.clone());
        }
        self.tensors.push((name, dtype, shape, bytes));
        self.ids.push(param.id.val());
    }
}

struct Assign<'a> {
    path: Vec<String>,
    tensors: &'a SafeTensors<'a>,
    ids: HashMap<String, String>,
    error: Option<String>,
    used: usize,
}

impl Assign<'_> {
    fn decode(&self, name: &str, shape: &[usize]) -> std::result::Result<TensorData, String> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| format!("it has no tensor `{name}`: it was written for another model"))?;
        if view.shape() != shape {
            return Err(format!(
                "tensor `{name}` has shape {:?} in the file but {shape:?} in the model",
                view.shape()
            ));
        }
        let data = view.data();
        let non_finite = || format!("tensor `{name}` holds non-finite values (NaN or infinity)");
        match view.dtype() {
            Dtype::F32 => {
                let values: Vec<f32> = data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .collect();
                if !values.iter().all(|v| v.is_finite()) {
                    return Err(non_finite());
                }
                Ok(TensorData::new(values, shape.to_vec()))
            }
            Dtype::F64 => {
                let values: Vec<f64> = data
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect();
                if !values.iter().all(|v| v.is_finite()) {
                    return Err(non_finite());
                }
                Ok(TensorData::new(values, shape.to_vec()))
            }
            other => Err(format!(
                "tensor `{name}` has dtype {other:?}; only F32 and F64 are read"
            )),
        }
    }
}

impl ModuleMapper for Assign<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let name = self.path.join(".");
        let shape = param.val().dims().to_vec();
        match self.decode(&name, &shape) {
            Ok(data) => {
                self.used += 1;
                let saved_id = self.ids.get(&name).and_then(|id| id.parse::<u64>().ok());
                let (id, old, mapper) = param.consume();
                let options = TensorCreationOptions::new(old.device()).with_dtype(old.dtype());
                let t =
                    Tensor::<D>::from_data(data, options).set_require_grad(old.is_require_grad());
                let id = saved_id.map_or(id, ParamId::from);
                Param::from_mapped_value(id, t, mapper)
            }
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}
