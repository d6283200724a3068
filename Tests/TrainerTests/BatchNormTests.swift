import XCTest
import Batches
import Foundation
import KeyedRandom
import TestSupport
@testable import Trainer

/// Batch normalisation: its arithmetic against PyTorch's BatchNorm2d / BatchNorm1d run
/// from PyPI, its gradients against finite differences, and its running statistics
/// through shards, stochastic depth, checkpoints and evaluation.
final class BatchNormTests: XCTestCase {
    override func setUp() { setBLASThreads(1) }

    private func values(_ count: Int, seed: UInt64, scale: Float = 1, offset: Float = 0) -> [Float] {
        var r = TrainerRandom(seed: seed)
        return (0..<count).map { _ in r.normal() * scale + offset }
    }

    /// An optimiser that only blends running averages (learning rate 0, no momentum).
    private func blender(_ p: [Parameter]) -> SGD {
        SGD(parameters: p, config: SGDConfig(learningRate: 0, momentum: 0, nesterov: false, weightDecay: 0, warmupSteps: 0, totalSteps: 1))
    }

    /// One training step and one evaluation, NHWC [4, 5, 6, 3] and [2, 5, 7, 19] (two
    /// 8-float vectors and a scalar tail of channels in the vector clones) and dense [8, 5], against
    /// torch.nn.BatchNorm2d / BatchNorm1d (momentum 0.1, eps 1e-5): the output, the
    /// input, scale and shift gradients, the running mean and (unbiased) variance after
    /// the step, and the evaluation output with them. The inputs have a mean far from 0,
    /// where one-pass variance formulas lose digits.
    func testOneStepAndEvaluationMatchPyTorch() throws {
        var cases: [[String: Any]] = []
        var ours: [[String: [Float]]] = []
        for (k, shape) in [[4, 5, 6, 3], [2, 5, 7, 19], [8, 5]].enumerated() {
            let c = shape.last ?? 1, count = shape.reduce(1, *)
            let seed = UInt64(10 * k)
            let x = values(count, seed: seed + 1, scale: 2, offset: 30)
            let x2 = values(count, seed: seed + 2, scale: 2, offset: 30)
            let dy = values(count, seed: seed + 3)
            let bn = BatchNorm(c, name: "bn")
            bn.gamma.value = values(c, seed: seed + 4, scale: 0.5, offset: 1)
            bn.beta.value = values(c, seed: seed + 5, scale: 0.5)
            bn.runningMean.value = values(c, seed: seed + 6)
            bn.runningVariance.value = values(c, seed: seed + 7, scale: 0.2, offset: 1).map { abs($0) }
            let initial: [String: Any] = ["shape": shape, "x": x, "x2": x2, "dy": dy, "gamma": bn.gamma.value, "beta": bn.beta.value,
                                          "mean": bn.runningMean.value, "var": bn.runningVariance.value]
            cases.append(initial)
            var ctx = StepContext(training: true, seed: 0)
            let y = bn.forward(Tensor(shape: shape, data: x), &ctx)
            let dx = bn.backward(Tensor(shape: shape, data: dy))
            let (dgamma, dbeta) = (bn.gamma.grad, bn.beta.grad)
            blender(bn.parameters).update()
            var eval = StepContext(training: false, seed: 0)
            let yEval = bn.forward(Tensor(shape: shape, data: x2), &eval)
            ours.append(["y": y.data, "dx": dx.data, "dgamma": dgamma, "dbeta": dbeta, "mean": bn.runningMean.value,
                         "var": bn.runningVariance.value, "y_eval": yEval.data])
        }
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/cases.json"
        try JSONSerialization.data(withJSONObject: cases).write(to: URL(fileURLWithPath: path))
        let r = try Processes.torchScript("""
        import json, sys, torch
        out = []
        for c in json.load(open(sys.argv[1])):
            shape = c["shape"]
            t = lambda k: torch.tensor(c[k], dtype=torch.float32).reshape(shape)
            ch = shape[-1]
            if len(shape) == 4:  # NHWC in, NCHW for torch, NHWC back
                bn = torch.nn.BatchNorm2d(ch, eps=1e-5, momentum=0.1)
                to, back = (lambda a: a.permute(0, 3, 1, 2).contiguous()), (lambda a: a.permute(0, 2, 3, 1).contiguous())
            else:
                bn = torch.nn.BatchNorm1d(ch, eps=1e-5, momentum=0.1)
                to = back = lambda a: a
            with torch.no_grad():
                bn.weight.copy_(torch.tensor(c["gamma"])); bn.bias.copy_(torch.tensor(c["beta"]))
                bn.running_mean.copy_(torch.tensor(c["mean"])); bn.running_var.copy_(torch.tensor(c["var"]))
            bn.train()
            x = to(t("x")).requires_grad_(True)
            y = bn(x)
            (y * to(t("dy"))).sum().backward()
            bn.eval()
            with torch.no_grad():
                y_eval = bn(to(t("x2")))
            flat = lambda a: back(a.detach()).reshape(-1).tolist()
            out.append({"y": flat(y), "dx": flat(x.grad), "dgamma": bn.weight.grad.tolist(), "dbeta": bn.bias.grad.tolist(),
                        "mean": bn.running_mean.tolist(), "var": bn.running_var.tolist(), "y_eval": flat(y_eval)})
        print(json.dumps(out))
        """, [path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let torch = try XCTUnwrap(JSONSerialization.jsonObject(with: r.stdoutData) as? [[String: [Double]]])
        XCTAssertEqual(torch.count, 3)
        for (k, (mine, theirs)) in zip(ours, torch).enumerated() {
            for key in ["y", "dx", "dgamma", "dbeta", "mean", "var", "y_eval"] {
                let a = mine[key] ?? [], b = theirs[key] ?? []
                XCTAssertEqual(a.count, b.count, "case \(k) \(key)")
                let scale = max(1, b.map(abs).max() ?? 1)
                let worst = zip(a, b).map { abs(Double($0) - $1) }.max() ?? .infinity
                XCTAssertLessThan(worst / scale, 2e-5, "case \(k) \(key): worst difference \(worst) from PyTorch")
            }
        }
    }

    /// Finite differences through batch normalisation in training mode, alone, between
    /// a convolution and a ReLU, and in a residual block (its last scale set away from
    /// the zero it starts at, or the block's first convolution would get no gradient).
    func testGradients() {
        var r = TrainerRandom(seed: 21)
        let bn = BatchNorm(3, name: "bn")
        bn.gamma.value = values(3, seed: 22, scale: 0.5, offset: 1)
        bn.beta.value = values(3, seed: 23)
        gradientCheck([bn], input: random([2, 3, 4, 3], seed: 24), eps: 1e-3)
        gradientCheck([Conv3x3(2, 3, bias: false, rng: &r, name: "c"), BatchNorm(3, name: "b"), ReLU()],
                            input: random([2, 4, 5, 2], seed: 25, scale: 0.5), eps: 1e-3)
        gradientCheck([Dense(6, 4, rng: &r, name: "d"), BatchNorm(4, name: "b")], input: random([5, 6], seed: 26), eps: 1e-3)
        let block = Residual(channels: 2, survival: 1, batchNorm: true, rng: &r, name: "r")
        for case let b as BatchNorm in block.body { b.gamma.value = values(2, seed: 27, scale: 0.3, offset: 1) }
        gradientCheck([block], input: random([2, 4, 4, 2], seed: 28, scale: 0.5), eps: 1e-3)
    }

    /// A residual block that stochastic depth dropped measures nothing, and its running
    /// statistics stay where they were; a kept block moves them 10% of the way to the batch's.
    func testADroppedBlockLeavesItsRunningStatisticsAlone() {
        var r = TrainerRandom(seed: 31)
        let block = Residual(channels: 2, survival: 1e-6, batchNorm: true, rng: &r, name: "r")
        let sgd = blender(block.parameters)
        let x = Tensor(shape: [2, 4, 4, 2], data: values(64, seed: 32, offset: 3))
        let running = block.parameters.filter { !$0.isLearned }
        let before = running.map(\.value)
        var ctx = StepContext(training: true, seed: 5)
        _ = block.backward(block.forward(x, &ctx))
        sgd.update()
        XCTAssertEqual(running.map(\.value), before, "dropped: no measurement, no change")
        block.survival = 1
        _ = block.backward(block.forward(x, &ctx))
        sgd.update()
        let mean = running[0].value  // r.bn1.mean: the first convolution's output, measured
        XCTAssertNotEqual(mean, before[0])
        XCTAssertEqual(running[1].value.count, 2)
        XCTAssertTrue(running[1].value.allSatisfy { $0 > 0.9 && $0.isFinite }, "variance 0.9 * 1 + 0.1 * a batch variance: \(running[1].value)")
    }

    /// Shards normalise with their own statistics; the running mean they leave is the
    /// row-weighted mean of their measurements, which for the first normalisation (same
    /// weights on every shard) is the whole batch's mean: a 15-sample batch cut 7 + 8
    /// leaves what one shard leaves.
    func testShardsMergeTheirMeasurementsByRows() throws {
        var a = architecture()
        a.batchNorm = true; a.dropout = 0; a.finalSurvival = 1
        let config = SGDConfig(learningRate: 0.05, warmupSteps: 1, totalSteps: 4)
        let one = try Trainer(architecture: a, optimizer: config, seed: 8, shards: 1)
        let two = try Trainer(architecture: a, optimizer: config, seed: 8, shards: 2)
        let batch = toyBatch(3, n: 15)
        try one.step(batch); try two.step(batch)
        func stemMean(_ t: Trainer) -> [Float] { t.model.parameters.first { $0.name == "stem.bn.mean" }?.value ?? [] }
        XCTAssertEqual(stemMean(one).count, 8)
        XCTAssertTrue(stemMean(one).contains { abs($0) > 1e-3 }, "the step moved the running mean")
        for (p, q) in zip(stemMean(one), stemMean(two)) { XCTAssertEqual(p, q, accuracy: 1e-6) }
    }

    /// A CNN and an MLP with batch normalisation learn the toy task deterministically;
    /// stopped at step 8, saved, loaded and resumed, they end where an uninterrupted run
    /// ends (weights and running statistics); their predictions use the running
    /// statistics, so a sample's prediction is the same alone and in a batch of 40; and
    /// the checkpoint header says `batch_norm`, while a header without it (written
    /// before it existed) reads as false.
    func testModelsWithBatchNormLearnResumeAndPredictPerSample() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = SGDConfig(learningRate: 0.05, warmupSteps: 3, totalSteps: 40, emaDecay: 0.9)
        for kind in ["cnn", "mlp"] {
            var a = architecture(kind)
            a.batchNorm = true
            let full = try Trainer(architecture: a, optimizer: config, seed: 5)
            let part = try Trainer(architecture: a, optimizer: config, seed: 5)
            XCTAssertTrue(full.model.parameters.contains { !$0.isLearned }, "\(kind) has running statistics")
            for k in 0..<40 { try full.step(toyBatch(k)) }
            for k in 0..<8 { try part.step(toyBatch(k)) }
            let path = dir + "/\(kind).ckpt"
            try Checkpoint.save(path: path, model: part.model, optimizer: part.optimizer, seed: 5, stream: toyBatch(7).stateAfter)
            let (header, model, optimizer) = try Checkpoint.load(path: path)
            XCTAssertTrue(header.architecture.batchNorm)
            let resumed = Trainer(model: model, optimizer: optimizer, seed: header.seed)
            for k in 8..<40 { try resumed.step(toyBatch(k)) }
            XCTAssertEqual(resumed.model.parameters.map(\.value), full.model.parameters.map(\.value), "\(kind): resumed = uninterrupted")
            XCTAssertGreaterThan(try toyAccuracy(full), 0.9, "\(kind) with batch normalisation learns the toy task")
            let input = try Model.input(toyBatch(60, n: 40))
            let together = full.predict(input, batchInvariant: true)
            for i in [0, 13, 39] {
                let alone = full.predict(input.rows(i..<(i + 1)), batchInvariant: true)
                XCTAssertEqual(alone, Array(together[(2 * i)..<(2 * i + 2)]), "\(kind): sample \(i) alone")
            }
        }
        // A header from before batch normalisation: no batch_norm key.
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: e.encode(architecture())) as? [String: Any])
        XCTAssertEqual(json["batch_norm"] as? Bool, false)
        json["batch_norm"] = nil
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        let old = try d.decode(Architecture.self, from: JSONSerialization.data(withJSONObject: json))
        XCTAssertFalse(old.batchNorm)
        XCTAssertEqual(old, architecture())
    }
}
