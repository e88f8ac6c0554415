//! `--distributed nccl`: one rank per GPU, started by `mpirun -np N` on one node or several.
//! MPI starts the ranks, hands NCCL its id and carries the small broadcasts; NCCL sums the
//! gradients over the GPUs (NVLink, PCIe or the network between nodes), which is where the
//! traffic is.
//!
//! The engine's [`Collective`] works on host slices (the gradients it averages are read back to
//! the host, as for MPI), so each sum is staged: copied into a device buffer kept across steps,
//! summed in place by NCCL, and copied back. That costs two copies over PCIe per step, small
//! beside a Glow step; summing burn's gradient tensors where they lie would save them but
//! needs the backend's buffers, which burn does not expose.

use std::cell::RefCell;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};
use cudarc::nccl::safe::{Comm, Id, NcclType, ReduceOp};
use flowcore::train::Collective;

use super::distributed::MpiWorld;

/// The ranks of `MPI_COMM_WORLD`, one GPU each, summing over NCCL.
pub struct NcclWorld {
    // Dropped before `mpi`: NCCL's communicator ends before MPI does.
    comm: Comm,
    stream: Arc<CudaStream>,
    staging: RefCell<Staging>,
    mpi: MpiWorld,
}

/// Device buffers reused by every sum; they grow to the largest one asked for.
#[derive(Default)]
struct Staging {
    f32: Option<CudaSlice<f32>>,
    f64: Option<CudaSlice<f64>>,
}

impl NcclWorld {
    /// Start MPI, then NCCL on GPU `ordinal` (this rank's: `--device cuda:local`).
    pub fn init(ordinal: usize) -> Result<Self> {
        let mpi = MpiWorld::init()?;
        let (rank, size) = (mpi.rank(), mpi.size());
        // Rank 0 makes the id and every rank receives it; an empty one says rank 0 failed, so
        // that no rank waits for a communicator that will not form.
        let mut id_bytes = Vec::new();
        let made = if rank == 0 {
            let id = Id::new();
            if let Ok(id) = &id {
                id_bytes = id.internal().iter().map(|&c| c as u8).collect();
            }
            Some(id)
        } else {
            None
        };
        mpi.broadcast_bytes(&mut id_bytes, 0);
        if let Some(Err(e)) = made {
            bail!("NCCL could not create its id on rank 0 ({e:?}): is libnccl installed?");
        }
        let internal: [std::ffi::c_char; 128] = id_bytes
            .iter()
            .map(|&b| b as std::ffi::c_char)
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| anyhow::anyhow!("NCCL's id did not reach rank {rank} from rank 0"))?;
        let context = CudaContext::new(ordinal)
            .with_context(|| format!("rank {rank}: cannot open GPU {ordinal}"))?;
        let stream = context.default_stream();
        let comm =
            Comm::from_rank(stream.clone(), rank, size, Id::uninit(internal)).map_err(|e| {
                anyhow::anyhow!(
                    "rank {rank} of {size}: NCCL did not form its communicator on GPU \
                     {ordinal} ({e:?}); each rank needs a GPU of its own"
                )
            })?;
        Ok(Self {
            comm,
            stream,
            staging: RefCell::new(Staging::default()),
            mpi,
        })
    }

    /// The MPI world under NCCL (for ending a failed run on every rank).
    pub fn mpi(&self) -> &MpiWorld {
        &self.mpi
    }

    fn all_reduce<T: NcclType + DeviceRepr + ValidAsZeroBits>(
        &self,
        buffer: &mut Option<CudaSlice<T>>,
        values: &mut [T],
    ) {
        if values.is_empty() {
            return;
        }
        let (rank, n) = (self.mpi.rank(), values.len());
        if buffer.as_ref().is_none_or(|b| b.len() < n) {
            *buffer = Some(
                self.stream
                    .alloc_zeros::<T>(n)
                    .unwrap_or_else(|e| fail(rank, n, "allocating the device buffer", &e)),
            );
        }
        let Some(buffer) = buffer.as_mut() else {
            unreachable!("allocated above")
        };
        let mut view = buffer.slice_mut(0..n);
        self.stream
            .memcpy_htod(&*values, &mut view)
            .unwrap_or_else(|e| fail(rank, n, "the copy to the GPU", &e));
        self.comm
            .all_reduce_in_place(&mut view, &ReduceOp::Sum)
            .unwrap_or_else(|e| fail(rank, n, "the sum", &e));
        self.stream
            .memcpy_dtoh(&view, values)
            .unwrap_or_else(|e| fail(rank, n, "the copy back", &e));
        self.stream
            .synchronize()
            .unwrap_or_else(|e| fail(rank, n, "the stream", &e));
    }
}

/// The engine's collectives cannot return errors: a failed NCCL call ends the rank, and
/// mpirun the others.
fn fail(rank: usize, n: usize, what: &str, e: &dyn std::fmt::Debug) -> ! {
    panic!("rank {rank}: NCCL all-reduce of {n} values: {what} failed: {e:?}")
}

impl Collective for NcclWorld {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn size(&self) -> usize {
        self.mpi.size()
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) {
        let mut staging = self.staging.borrow_mut();
        self.all_reduce(&mut staging.f32, values);
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        let mut staging = self.staging.borrow_mut();
        self.all_reduce(&mut staging.f64, values);
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) {
        self.mpi.broadcast_bytes(bytes, root);
    }
}
