//! Data-parallel training across processes: `--distributed mpi` makes this process one rank of
//! an MPI world started by `mpirun -np N`, training with
//! [`flowcore::train::fit_data_parallel`]. MPI needs a build with `--features mpi` (OpenMPI and
//! libclang to compile); without it `--distributed mpi` is an error that says how to get it.
//!
//! `--distributed nccl` is the same with one GPU per rank, the gradients summed by NCCL (a
//! build with `--features cuda,mpi`; see `nccl.rs`).
//!
//! MPI is initialised once per process and finalised when [`Ranks`] is dropped. Only the thread
//! that initialised it calls MPI (`MPI_THREAD_FUNNELED`); the tensor backend's own threads
//! never do.

use anyhow::Result;
use flowcore::train::{Collective, SingleProcess};

/// How `train` runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Distributed {
    /// One process.
    #[default]
    None,
    /// One rank of a data-parallel run over MPI, started by `mpirun -np N` (a build with
    /// `--features mpi`).
    Mpi,
    /// One rank per GPU of a data-parallel run started by `mpirun -np N`, summing gradients
    /// over NCCL (a build with `--features cuda,mpi`; with `--device cuda:local`).
    Nccl,
}

/// The processes of a training run: this one alone, or the ranks of an MPI world. Dropping it
/// ends MPI; [`Ranks::finish`] ends a failed run on every rank.
pub enum Ranks {
    /// One process.
    One(SingleProcess),
    /// The ranks of `MPI_COMM_WORLD`.
    #[cfg(feature = "mpi")]
    Mpi(MpiWorld),
    /// The ranks of `MPI_COMM_WORLD`, one GPU each, summing over NCCL.
    #[cfg(all(feature = "mpi", feature = "cuda"))]
    Nccl(super::nccl::NcclWorld),
}

impl Ranks {
    /// Start `kind`: for MPI, initialise it (a process not started by `mpirun` is a world of
    /// one).
    pub fn start(kind: Distributed) -> Result<Self> {
        match kind {
            Distributed::None => Ok(Self::One(SingleProcess)),
            #[cfg(feature = "mpi")]
            Distributed::Mpi => {
                let world = MpiWorld::init()?;
                tracing::info!(
                    rank = world.rank(),
                    size = world.size(),
                    host = world.processor_name(),
                    library = MpiWorld::library_version().lines().next(),
                    "data-parallel training over MPI"
                );
                if world.size() == 1 {
                    tracing::warn!(
                        "--distributed mpi in a world of one process (not started by mpirun?)"
                    );
                }
                Ok(Self::Mpi(world))
            }
            #[cfg(all(feature = "mpi", feature = "cuda"))]
            Distributed::Nccl => {
                let Some(ordinal) = super::device::cuda_ordinal() else {
                    anyhow::bail!(
                        "--distributed nccl sums gradients on GPUs: add --device cuda:local \
                         (each rank on the GPU of its index on its node)"
                    )
                };
                let world = super::nccl::NcclWorld::init(ordinal)?;
                tracing::info!(
                    rank = world.rank(),
                    size = world.size(),
                    gpu = ordinal,
                    host = world.mpi().processor_name(),
                    "data-parallel training over NCCL"
                );
                Ok(Self::Nccl(world))
            }
            #[cfg(not(all(feature = "mpi", feature = "cuda")))]
            Distributed::Nccl => anyhow::bail!(
                "--distributed nccl: this build lacks {}; build with `--features cuda,mpi` \
                 (scripts/build-cuda.sh --features mpi) and launch with `mpirun -np N` and \
                 --device cuda:local",
                if cfg!(feature = "cuda") {
                    "MPI"
                } else {
                    "CUDA"
                }
            ),
            #[cfg(not(feature = "mpi"))]
            Distributed::Mpi => anyhow::bail!(
                "--distributed mpi: this build has no MPI support; build with `--features mpi` \
                 (it needs OpenMPI and libclang: apt-get install libopenmpi-dev openmpi-bin \
                 libclang-dev) and launch with `mpirun -np N`"
            ),
        }
    }

    /// The collectives training uses.
    pub fn collective(&self) -> &dyn Collective {
        match self {
            Self::One(one) => one,
            #[cfg(feature = "mpi")]
            Self::Mpi(world) => world,
            #[cfg(all(feature = "mpi", feature = "cuda"))]
            Self::Nccl(world) => world,
        }
    }

    /// The end of a run on this rank. An error on one rank of several ends every rank
    /// (`MPI_Abort`) after printing it, so that no rank waits forever in a collective the
    /// failed one will never join; rank 0's checkpoints are written atomically, so the last one
    /// stays intact.
    pub fn finish<T>(self, result: Result<T>) -> Result<T> {
        #[cfg(feature = "mpi")]
        let world = match &self {
            Self::One(_) => None,
            Self::Mpi(world) => Some(world),
            #[cfg(feature = "cuda")]
            Self::Nccl(world) => Some(world.mpi()),
        };
        #[cfg(feature = "mpi")]
        if let (Some(world), Err(e)) = (world, &result)
            && world.size() > 1
        {
            eprintln!("error on rank {} of {}: {e:#}", world.rank(), world.size());
            world.abort(1);
        }
        result
    }
}

#[cfg(feature = "mpi")]
pub use mpi_world::MpiWorld;

#[cfg(feature = "mpi")]
mod mpi_world {
    use flowcore::train::Collective;
    use mpi::Threading;
    use mpi::collective::SystemOperation;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::{Communicator, CommunicatorCollectives, Equivalence, Root};

    /// Why MPI could not start.
    #[derive(Debug, thiserror::Error)]
    pub enum DistError {
        /// `MPI_Init` failed or MPI was already initialised.
        #[error("MPI did not initialise (was it initialised twice, or is the MPI library broken?)")]
        Init,
        /// MPI gave less thread support than the tensor backend's worker threads need.
        #[error("MPI gives thread support {0:?}; flowmodels needs at least Funneled")]
        Threading(Threading),
    }

    /// The processes of `MPI_COMM_WORLD`.
    pub struct MpiWorld {
        world: SimpleCommunicator,
        // Dropped last: finalises MPI.
        _universe: Universe,
    }

    // Collectives move at most this many elements per call: MPI counts are 32-bit.
    const CHUNK: usize = 1 << 28;

    impl MpiWorld {
        /// Initialise MPI. A process not started by an MPI launcher is a world of one.
        pub fn init() -> Result<Self, DistError> {
            let (universe, threading) =
                mpi::initialize_with_threading(Threading::Funneled).ok_or(DistError::Init)?;
            if threading < Threading::Funneled {
                return Err(DistError::Threading(threading));
            }
            let world = universe.world();
            Ok(Self {
                world,
                _universe: universe,
            })
        }

        /// The MPI library's own version string (e.g. `Open MPI v4.1.4, ...`).
        pub fn library_version() -> String {
            mpi::environment::library_version()
                .map(|v| v.trim_end_matches(char::from(0)).to_string())
                .unwrap_or_else(|_| "unknown".into())
        }

        /// This processor's name, as MPI gives it (the host name).
        pub fn processor_name(&self) -> String {
            mpi::environment::processor_name().unwrap_or_else(|_| "unknown".into())
        }

        fn all_reduce_sum<T: Equivalence + Clone>(&self, values: &mut [T]) {
            for chunk in values.chunks_mut(CHUNK) {
                let send = chunk.to_vec();
                self.world
                    .all_reduce_into(&send[..], chunk, SystemOperation::sum());
            }
        }

        /// End every process of the world with `code` (`MPI_Abort`): after an error on one rank,
        /// so that the others do not wait forever in a collective it will never join.
        pub fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }

    impl Collective for MpiWorld {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }

        fn size(&self) -> usize {
            self.world.size() as usize
        }

        fn all_reduce_sum_f32(&self, values: &mut [f32]) {
            self.all_reduce_sum(values);
        }

        fn all_reduce_sum_f64(&self, values: &mut [f64]) {
            self.all_reduce_sum(values);
        }

        fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) {
            let process = self.world.process_at_rank(root as i32);
            let mut len = bytes.len() as u64;
            process.broadcast_into(&mut len);
            bytes.resize(len as usize, 0);
            for chunk in bytes.chunks_mut(CHUNK) {
                process.broadcast_into(chunk);
            }
        }
    }
}
