import XCTest
import Augment
import Batches
import Pipeline
import KeyedRandom

final class SamplerTests: XCTestCase {
    func testPermutationDependsOnSeedAndEpochOnly() {
        let a = EpochSampler.permutation(count: 1000, seed: 7, epoch: 3)
        XCTAssertEqual(a, EpochSampler.permutation(count: 1000, seed: 7, epoch: 3))
        XCTAssertEqual(a.sorted(), Array(0..<1000))
        XCTAssertNotEqual(a, EpochSampler.permutation(count: 1000, seed: 7, epoch: 4))
        XCTAssertNotEqual(a, EpochSampler.permutation(count: 1000, seed: 8, epoch: 3))
        XCTAssertNotEqual(a, Array(0..<1000))
    }

    func testRanksAreDisjointAndEqual() throws {
        let n = 103, w = 4
        var shares: [[Int]] = []
        for r in 0..<w {
            var s = try EpochSampler(count: n, state: SamplerState(seed: 1), rank: r, worldSize: w)
            shares.append((0..<s.perRank).map { _ in s.next().item })
            XCTAssertEqual(s.state.epoch, 1, "a rank's share ends the epoch")
        }
        XCTAssertEqual(Set(shares.map(\.count)), [n / w])
        let all = shares.flatMap { $0 }
        XCTAssertEqual(Set(all).count, all.count, "disjoint")
        XCTAssertEqual(all.count, n - n % w)
    }

    func testResumeReproducesExactlyWhatComesNext() throws {
        var a = try EpochSampler(count: 50, state: SamplerState(seed: 9))
        for _ in 0..<73 { _ = a.next() }
        let saved = a.state
        XCTAssertEqual(saved, SamplerState(seed: 9, epoch: 1, position: 23))
        let expected = (0..<120).map { _ in a.next().item }
        var b = try EpochSampler(count: 50, state: saved)
        XCTAssertEqual((0..<120).map { _ in b.next().item }, expected)
    }

    /// A job stopped at 2 ranks resumes at 3, then at 1, in the same epoch: the global
    /// position carries over, so every sample of the epoch is taken exactly once.
    func testElasticResumeAcrossWorldSizesTakesEverySampleOnce() throws {
        let n = 103
        var taken: [Int] = []
        var state = SamplerState(seed: 4)
        for (world, rounds) in [(2, 20), (3, 10), (1, Int.max)] {
            var ranks = try (0..<world).map { try EpochSampler(count: n, state: state, rank: $0, worldSize: world) }
            var round = 0
            while round < rounds, ranks[0].state.epoch == 0 {
                for r in 0..<world {
                    let got = ranks[r].next()
                    XCTAssertEqual(got.epoch, 0)
                    taken.append(got.item)
                }
                XCTAssertTrue(ranks.allSatisfy { $0.state == ranks[0].state }, "every rank holds the same state")
                round += 1
            }
            state = ranks[0].state
        }
        XCTAssertEqual(state, SamplerState(seed: 4, epoch: 1, position: 0))
        XCTAssertEqual(taken.count, n, "40 + 30 + 33 items")
        XCTAssertEqual(taken.sorted(), Array(0..<n), "every sample exactly once")
        // The same epoch at a fixed world size gives the same order: the positions are the permutation's.
        XCTAssertEqual(taken, EpochSampler.permutation(count: n, seed: 4, epoch: 0))
    }

    /// A state written before positions were global (`step`, per rank) still resumes
    /// where it was saved, at the world size it was saved with; it comes back global.
    func testStepStatesFromEarlierVersionsResume() throws {
        let old = try JSONDecoder().decode(SamplerState.self, from: Data(#"{"seed": 3, "epoch": 2, "step": 5}"#.utf8))
        var resumed = try EpochSampler(count: 40, state: old, rank: 1, worldSize: 4)
        XCTAssertEqual(resumed.state, SamplerState(seed: 3, epoch: 2, position: 20))
        var fresh = try EpochSampler(count: 40, state: SamplerState(seed: 3, epoch: 2), rank: 1, worldSize: 4)
        for _ in 0..<5 { _ = fresh.next() }
        XCTAssertEqual((0..<12).map { _ in resumed.next().item }, (0..<12).map { _ in fresh.next().item })
        let written = String(decoding: try JSONEncoder().encode(resumed.state), as: UTF8.self)
        XCTAssertTrue(written.contains("\"position\"") && !written.contains("\"step\""), written)
        XCTAssertThrowsError(try JSONDecoder().decode(SamplerState.self, from: Data(#"{"seed": 3, "epoch": 2}"#.utf8)))
    }

    func testBadStatesAreRefused() {
        XCTAssertThrowsError(try EpochSampler(count: 10, state: SamplerState(seed: 1), rank: 2, worldSize: 2))
        XCTAssertThrowsError(try EpochSampler(count: 10, state: SamplerState(seed: 1, position: 11), rank: 0, worldSize: 2))
        XCTAssertThrowsError(try EpochSampler(count: 1, state: SamplerState(seed: 1), rank: 0, worldSize: 2))
    }

    func testKeyedRandomIsAPureFunctionOfItsKey() {
        func draws(_ sample: UInt64, _ purpose: RandomPurpose) -> [UInt64] {
            var g = KeyedRandom(seed: 3, epoch: 2, sample: sample, purpose: purpose)
            return (0..<8).map { _ in g.next() }
        }
        // Drawing other streams in between (as another thread would) changes nothing.
        let first = draws(5, .crop)
        _ = draws(6, .crop); _ = draws(5, .flip)
        XCTAssertEqual(draws(5, .crop), first)
        XCTAssertNotEqual(draws(5, .flip), first)
        XCTAssertNotEqual(draws(6, .crop), first)
        // Roughly uniform: the mean of many unit draws is near 0.5.
        var g = KeyedRandom(seed: 1, epoch: 0, sample: 0, purpose: .randAugment)
        let mean = (0..<100_000).reduce(0.0) { acc, _ in acc + g.unit() } / 100_000
        XCTAssertEqual(mean, 0.5, accuracy: 0.01)
    }
}
