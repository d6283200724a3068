internal import CMalloc
internal import CFaultLine
import Foundation

/// Process-wide settings, in one place and applied once, before a command runs
/// (`Noisy.main`). Library modules never change process state themselves.
enum ProcessSetup {
    /// A read through a damaged store's wild page pointer (inside liblmdb, which
    /// keeps no page checksums) ends with one line naming the store and exit status
    /// 1, not a backtrace. `verify` and `salvage` never get there: they validate
    /// every page first (`PageWalk`).
    static func installFaultLine() {
        fl_install()
    }

    static func faultLineNames(store: String) {
        fl_set_message("noisy: \(store): a read faulted inside LMDB: the store looks damaged; noisy verify --store \(store) tells more, noisy salvage --store \(store) --out NEW saves what can be saved")
    }

    /// Readies this process for training: the OpenBLAS kernels for this CPU, and an
    /// allocator that keeps freed activation buffers. A step allocates and frees the
    /// same few megabyte-sized arrays; with glibc's defaults they are mmapped or
    /// trimmed back to the kernel and every step page-faults them in again (measured:
    /// 20% of a student's step). Raising both thresholds keeps them in the heap.
    static func prepareForTraining() {
        #if os(Linux)
        _ = mallopt(M_MMAP_THRESHOLD, 256 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 1 << 30)
        #endif
        ensureOpenBLASKernels()
    }

    /// OpenBLAS chooses its kernels when the library loads, from the CPU model; on
    /// virtual machines that hide the model it falls back to its oldest x86-64 kernels
    /// (Prescott), 3-4x slower. Before any training, a process whose CPU has AVX-512 or
    /// AVX2 and whose environment names no core type sets OPENBLAS_CORETYPE and
    /// re-executes itself, so that the library loads with the right kernels. Returns
    /// only when no re-exec was needed or it failed (then training is slower, not wrong).
    ///
    /// Kernels differ per CPU family, and so can the last bits of a sum: results are
    /// reproducible on one family, not across families (README, "Determinism").
    private static func ensureOpenBLASKernels() {
        guard getenv("OPENBLAS_CORETYPE") == nil, getenv("NOISY_NO_REEXEC") == nil else { return }
        #if arch(x86_64)
        guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flags = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return }
        let set = Set(flags.split(separator: " ").map(String.init))
        let core = set.contains("avx512f") && set.contains("avx512bw") ? "SkylakeX"
            : set.contains("avx2") && set.contains("fma") ? "Haswell" : nil
        guard let core else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv("NOISY_NO_REEXEC", "1", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        #endif
    }
}

/// A command that trains or runs a model: `Noisy.main` prepares the process for it.
protocol TrainsModels {}
