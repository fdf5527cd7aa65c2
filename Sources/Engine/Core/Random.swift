import Foundation

/// A seeded, reproducible random number generator (xoshiro256**, seeded through SplitMix64).
///
/// The same seed gives the same stream on every machine. Every random initializer and masking
/// function of the engine takes one of these explicitly, so a run is reproducible from its seed.
public struct TesseraRNG: RandomNumberGenerator, Codable, Equatable, Sendable {
    public var state: [UInt64]

    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        state = [splitmix(), splitmix(), splitmix(), splitmix()]
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = Self.rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]; state[3] ^= state[1]; state[1] ^= state[2]; state[0] ^= state[3]
        state[2] ^= t
        state[3] = Self.rotl(state[3], 45)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits (every value exactly representable as a Float).
    public mutating func uniform() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * uniform() }

    /// Standard normal (Box–Muller in double precision).
    public mutating func normal() -> Float {
        var u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2.0 * log(u1)).squareRoot() * cos(2.0 * Double.pi * u2))
    }

    /// An integer in 0..<n.
    public mutating func int(below n: Int) -> Int { Int(next(upperBound: UInt64(n))) }
}
