import XCTest
import Foundation
import KeyedRandom
import TestSupport
@testable import Trainer

/// The 3x3 convolution on both of its paths (direct AVX2 kernels, im2col + GEMM)
/// against torch.nn.functional.conv2d run from PyPI: output, input gradient,
/// weight and bias gradients.
final class ConvolutionTests: XCTestCase {
    override func setUp() { setBLASThreads(1) }

    struct Case {
        var cin: Int, cout: Int, shape: [Int]
        var bias: Bool, inputGradient: Bool
        /// Which path the layer must take on this machine (AVX2 + FMA).
        var direct: Bool
    }

    /// Square shapes that reach every tile of the direct kernels (4 pixels x 16
    /// channels, 8 pixels x 8 channels, single-pixel and single-channel remainders,
    /// a 16-channel chunk followed by an 8-channel one), and shapes that take the GEMM
    /// path: the stem's single input channel, stage convolutions, widths that are not
    /// multiples of 8 or wider than 32.
    static let cases: [Case] = [
        Case(cin: 16, cout: 16, shape: [2, 9, 7, 16], bias: false, inputGradient: true, direct: true),
        Case(cin: 8, cout: 8, shape: [2, 5, 11, 8], bias: true, inputGradient: true, direct: true),
        Case(cin: 24, cout: 24, shape: [1, 6, 9, 24], bias: false, inputGradient: true, direct: true),
        Case(cin: 32, cout: 32, shape: [2, 4, 5, 32], bias: true, inputGradient: false, direct: true),
        Case(cin: 1, cout: 16, shape: [2, 7, 6, 1], bias: true, inputGradient: false, direct: false),
        Case(cin: 16, cout: 32, shape: [1, 5, 4, 16], bias: false, inputGradient: true, direct: false),
        Case(cin: 12, cout: 12, shape: [1, 4, 5, 12], bias: true, inputGradient: true, direct: false),
        Case(cin: 40, cout: 40, shape: [1, 3, 4, 40], bias: false, inputGradient: true, direct: false),
        Case(cin: 3, cout: 2, shape: [2, 5, 6, 3], bias: true, inputGradient: true, direct: false),
    ]

    func testBothPathsMatchPyTorch() throws {
        var inputs: [[String: Any]] = []
        var ours: [[String: [Float]]] = []
        for (k, c) in Self.cases.enumerated() {
            var r = TrainerRandom(seed: UInt64(100 + k))
            let conv = Conv3x3(c.cin, c.cout, bias: c.bias, rng: &r, name: "c")
            conv.needsInputGradient = c.inputGradient
            XCTAssertEqual(conv.direct, c.direct, "case \(k): \(c.cin) -> \(c.cout) channels should take the \(c.direct ? "direct" : "GEMM") path")
            if let b = conv.b { b.value = random([c.cout], seed: UInt64(200 + k)).data }
            let x = random(c.shape, seed: UInt64(300 + k))
            var outShape = c.shape
            outShape[3] = c.cout
            let dy = random(outShape, seed: UInt64(400 + k))
            var ctx = StepContext(training: true, seed: 0)
            let y = conv.forward(x, &ctx)
            // A second forward and backward: buffers reused between steps must not leak state,
            // and gradients accumulate (the test halves them back).
            _ = conv.forward(random(c.shape, seed: UInt64(500 + k)), &ctx)
            _ = conv.forward(x, &ctx)
            _ = conv.backward(dy)
            let dx = conv.backward(dy)
            inputs.append(["shape": c.shape, "cout": c.cout, "x": x.data, "dy": dy.data, "w": conv.w.value,
                           "b": conv.b?.value ?? [Float](repeating: 0, count: c.cout)])
            var mine: [String: [Float]] = ["y": y.data, "dw": conv.w.grad.map { $0 / 2 }]
            if let b = conv.b { mine["db"] = b.grad.map { $0 / 2 } }
            if c.inputGradient { mine["dx"] = dx.data } else { XCTAssertEqual(dx.count, 0) }
            ours.append(mine)
        }
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/cases.json"
        try JSONSerialization.data(withJSONObject: inputs).write(to: URL(fileURLWithPath: path))
        // Weights [9*cin, cout], tap-major then input channel -> torch's [cout, cin, 3, 3].
        let r = try Processes.torchScript("""
        import json, sys, torch
        torch.set_default_dtype(torch.float64)
        out = []
        for c in json.load(open(sys.argv[1])):
            n, h, w, cin = c["shape"]; cout = c["cout"]
            x = torch.tensor(c["x"], dtype=torch.float64).reshape(n, h, w, cin).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
            wt = torch.tensor(c["w"], dtype=torch.float64).reshape(3, 3, cin, cout).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
            b = torch.tensor(c["b"], dtype=torch.float64).requires_grad_(True)
            y = torch.nn.functional.conv2d(x, wt, b, stride=1, padding=1)
            dy = torch.tensor(c["dy"], dtype=torch.float64).reshape(n, h, w, cout).permute(0, 3, 1, 2)
            (y * dy).sum().backward()
            nhwc = lambda a: a.detach().permute(0, 2, 3, 1).reshape(-1).tolist()
            out.append({"y": nhwc(y), "dx": nhwc(x.grad), "dw": wt.grad.permute(2, 3, 1, 0).reshape(-1).tolist(),
                        "db": b.grad.tolist()})
        print(json.dumps(out))
        """, [path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let torch = try XCTUnwrap(JSONSerialization.jsonObject(with: r.stdoutData) as? [[String: [Double]]])
        XCTAssertEqual(torch.count, Self.cases.count)
        for (k, (mine, theirs)) in zip(ours, torch).enumerated() {
            XCTAssertNotNil(mine["y"]); XCTAssertNotNil(mine["dw"])
            for (key, a) in mine {
                let b = theirs[key] ?? []
                XCTAssertEqual(a.count, b.count, "case \(k) \(key)")
                let scale = max(1, b.map(abs).max() ?? 1)
                let worst = zip(a, b).map { abs(Double($0) - $1) }.max() ?? .infinity
                XCTAssertLessThan(worst / scale, 1e-5, "case \(k) \(key): worst difference \(worst) from PyTorch (float64)")
            }
        }
    }

    /// Finite differences through the direct path; the residual blocks of the deeper
    /// students (16 and 32 channels) take it, the stem and stage convolutions do not.
    func testDirectPathGradientsAndWhichLayersTakeIt() throws {
        var r = TrainerRandom(seed: 11)
        let conv = Conv3x3(16, 16, rng: &r, name: "c")
        XCTAssertTrue(conv.direct)
        gradientCheck([conv], input: random([2, 5, 6, 16], seed: 12))
        let deep = try Model(Architecture(kind: "cnn", width: 1, depth: 1, height: 28, imageWidth: 28, channels: 1, classes: 10), seed: 1)
        let convs = deep.layers.flatMap { l in (l as? Residual)?.body ?? [l] }.compactMap { $0 as? Conv3x3 }
        XCTAssertEqual(convs.map { "\($0.cin)->\($0.cout)" }, ["1->16", "16->16", "16->16", "16->32", "32->32", "32->32"])
        XCTAssertEqual(convs.map(\.direct), [false, true, true, false, true, true])
    }

    /// A sample's output on the direct path does not depend on the batch it is in:
    /// bit for bit, with or without `batchInvariant`.
    func testDirectOutputsDoNotDependOnTheBatch() {
        var r = TrainerRandom(seed: 21)
        let conv = Conv3x3(32, 32, rng: &r, name: "c")
        XCTAssertTrue(conv.direct)
        let batch = random([5, 8, 9, 32], seed: 22)
        var ctx = StepContext(training: false, seed: 0)
        let all = conv.forward(batch, &ctx).data
        let per = 8 * 9 * 32, outPer = 8 * 9 * 32
        for i in [0, 3, 4] {
            let one = Tensor(shape: [1, 8, 9, 32], data: Array(batch.data[(i * per)..<((i + 1) * per)]))
            XCTAssertEqual(conv.forward(one, &ctx).data, Array(all[(i * outPer)..<((i + 1) * outPer)]), "sample \(i)")
        }
    }
}
