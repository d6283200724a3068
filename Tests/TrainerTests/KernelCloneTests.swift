import XCTest
import Foundation
import TestSupport

/// The trainer's C kernels come in per-CPU versions: batch normalisation's AVX2 clone
/// and SSE2 baseline (target_clones), the direct convolutions' AVX-512 and AVX2 kernels.
/// A CPU runs only one of each, so an ordinary test never sees the others; a different
/// rounding in one would make training depend on the machine. Here the toolchain's
/// clang compiles each kernel file into a shared library, and Python's ctypes calls
/// every version by its symbol on the same seeded inputs, at the widths the models use
/// and at ragged ones: the versions must agree bit for bit, and be right against numpy
/// in double precision.
final class KernelCloneTests: XCTestCase {
    /// Compiles `Sources/CTensorKernels/<file>` into `<dir>/<file>.so`.
    private func sharedLibrary(_ file: String, in dir: String) throws -> String {
        let root = Processes.repositoryRoot + "/Sources/CTensorKernels"
        let out = dir + "/" + file + ".so"
        let cc = try Processes.run("/usr/bin/env", ["clang", "-O3", "-shared", "-fPIC", "-I", root + "/include", root + "/" + file, "-o", out])
        XCTAssertEqual(cc.status, 0, "clang \(file): " + cc.stderr)
        return out
    }

    /// Runs `script` with `lib` (the library, through ctypes), `ptr` (a numpy array's
    /// address) and `n` (ptrdiff_t) defined; it prints "checked" when every check holds.
    private func check(_ script: String, library: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let prelude = """
        import ctypes, sys, numpy as np
        lib = ctypes.CDLL(sys.argv[1])
        ptr, n = (lambda a: a.ctypes.data_as(ctypes.c_void_p)), ctypes.c_ssize_t

        """
        let r = try Processes.python(prelude + script, [library])
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "checked", file: file, line: line)
    }

    func testBatchNormClonesComputeTheSameBits() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try check("""
        def find(name, clone):
            for k in range(4):
                try: return lib[f"{name}.{clone}.{k}"]
                except AttributeError: pass
            raise SystemExit(f"no symbol {name}.{clone}.*")
        rng = np.random.default_rng(5)
        for rows, c in [(4 * 28 * 28, 16), (4 * 14 * 14, 32), (37, 300), (5, 3)]:
            x = (rng.standard_normal((rows, c)) * 2 + 30).astype(np.float32)
            dy = rng.standard_normal((rows, c)).astype(np.float32)
            gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
            results = []
            for clone in ["avx2", "default"]:
                mean, var = np.zeros(c, np.float32), np.zeros(c, np.float32)
                find("tk_bn_statistics", clone)(ptr(x), n(rows), n(c), ptr(mean), ptr(var))
                inv = (1 / np.sqrt(var + 1e-5)).astype(np.float32)
                xhat, y, dx = np.empty_like(x), np.empty_like(x), np.empty_like(x)
                find("tk_bn_forward", clone)(ptr(x), n(rows), n(c), ptr(mean), ptr(inv), ptr(gamma), ptr(beta), ptr(xhat), ptr(y))
                dgamma, dbeta = np.zeros(c, np.float32), np.zeros(c, np.float32)
                find("tk_bn_backward", clone)(ptr(dy), ptr(xhat), n(rows), n(c), ptr(gamma), ptr(inv), ptr(dgamma), ptr(dbeta), ptr(dx))
                results.append([mean, var, xhat, y, dgamma, dbeta, dx])
            for name, a, b in zip(["mean", "var", "xhat", "y", "dgamma", "dbeta", "dx"], *results):
                if a.tobytes() != b.tobytes():
                    print(f"{rows}x{c} {name}: AVX2 and SSE2 differ by up to {np.abs(a - b).max()}")
            ref = x.astype(np.float64)
            assert np.allclose(results[0][0], ref.mean(0), rtol=1e-6, atol=1e-5), "mean"
            assert np.allclose(results[0][1], ref.var(0), rtol=1e-4, atol=1e-5), "variance"
        print("checked")
        """, library: try sharedLibrary("kernels.c", in: dir))
    }

    /// AVX-512 against AVX2 where this CPU has AVX-512 (the CI machine does); on one
    /// without it, AVX2 alone against numpy, since there AVX-512 never runs.
    func testDirectConvolutionsComputeTheSameBitsOnAVX2AndAVX512() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try check("""
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
        isas = ["avx2", "avx512"] if "avx512f" in flags else ["avx2"]
        rng = np.random.default_rng(9)
        for b, h, w, c in [(4, 28, 28, 16), (4, 14, 14, 32), (3, 5, 7, 16), (2, 9, 11, 32), (2, 6, 6, 48), (2, 4, 5, 8)]:
            xp = np.zeros((b, h + 2, w + 2, c), np.float32)
            xp[:, 1:-1, 1:-1] = rng.standard_normal((b, h, w, c))
            wt = rng.standard_normal((9, c, c)).astype(np.float32)
            dy = rng.standard_normal((b, h, w, c)).astype(np.float32)
            bias = rng.standard_normal(c).astype(np.float32)
            results = []
            for isa in isas:
                # Garbage in the outputs: the forward kernel overwrites them (from the bias,
                # or from zero), the weight gradient adds to what is there.
                out, bare, dw = np.full((b, h, w, c), 7.0, np.float32), np.full((b, h, w, c), 7.0, np.float32), np.full((9, c, c), 0.5, np.float32)
                lib["tk_conv3x3_forward_" + isa](ptr(xp), n(b), n(h), n(w), n(c), ptr(wt), n(c), ptr(bias), ptr(out))
                lib["tk_conv3x3_forward_" + isa](ptr(xp), n(b), n(h), n(w), n(c), ptr(wt), n(c), None, ptr(bare))
                lib["tk_conv3x3_weight_grad_" + isa](ptr(xp), n(b), n(h), n(w), n(c), ptr(dy), n(c), ptr(dw))
                results.append((out, dw))
                assert np.abs(out - bias - bare).max() < 1e-4, f"{isa} bias {b}x{h}x{w}x{c}"
            x64 = xp.astype(np.float64)
            ref_out = bias.astype(np.float64) + sum(np.einsum("bhwc,cd->bhwd", x64[:, ky:ky + h, kx:kx + w], wt[3 * ky + kx].astype(np.float64))
                                 for ky in range(3) for kx in range(3))
            ref_dw = 0.5 + np.stack([np.einsum("bhwc,bhwd->cd", x64[:, ky:ky + h, kx:kx + w], dy.astype(np.float64))
                                     for ky in range(3) for kx in range(3)])
            for isa, (out, dw) in zip(isas, results):
                assert np.abs(out - ref_out).max() < 1e-4, f"{isa} forward {b}x{h}x{w}x{c}: {np.abs(out - ref_out).max()}"
                assert np.abs(dw - ref_dw).max() < 1e-3, f"{isa} weight gradient {b}x{h}x{w}x{c}: {np.abs(dw - ref_dw).max()}"
            for (o1, d1), (o2, d2) in zip(results, results[1:]):
                if o1.tobytes() != o2.tobytes() or d1.tobytes() != d2.tobytes():
                    print(f"{b}x{h}x{w}x{c}: AVX2 and AVX-512 differ")
        print("checked")
        """, library: try sharedLibrary("conv3x3.c", in: dir))
    }
}
