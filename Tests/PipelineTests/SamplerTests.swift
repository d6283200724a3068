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
        XCTAssertEqual(saved, SamplerState(seed: 9, epoch: 1, step: 23))
        let expected = (0..<120).map { _ in a.next().item }
        var b = try EpochSampler(count: 50, state: saved)
        XCTAssertEqual((0..<120).map { _ in b.next().item }, expected)
    }

    func testBadStatesAreRefused() {
        XCTAssertThrowsError(try EpochSampler(count: 10, state: SamplerState(seed: 1), rank: 2, worldSize: 2))
        XCTAssertThrowsError(try EpochSampler(count: 10, state: SamplerState(seed: 1, step: 5), rank: 0, worldSize: 2))
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
