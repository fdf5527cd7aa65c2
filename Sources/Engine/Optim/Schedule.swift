import Foundation

/// Learning-rate and momentum schedules, evaluated per iteration.
public enum Schedule {
    /// MAE's schedule: linear warmup from 0 over `warmup` iterations, then a half-cycle cosine from
    /// `base` to `minimum` at `total`.
    public static func warmupCosine(iteration: Double, base: Double, warmup: Double, total: Double,
                                    minimum: Double = 0) -> Double {
        if iteration < warmup { return base * iteration / warmup }
        let span = max(total - warmup, 1e-12)
        let progress = min(max((iteration - warmup) / span, 0), 1)
        return minimum + (base - minimum) * 0.5 * (1 + Foundation.cos(Double.pi * progress))
    }

    /// A half-cycle cosine from `start` to `end` over progress 0…1 (EMA momentum, weight decay).
    public static func cosine(progress: Double, from start: Double, to end: Double) -> Double {
        let p = min(max(progress, 0), 1)
        return end + (start - end) * 0.5 * (1 + Foundation.cos(Double.pi * p))
    }

    /// A straight line from `start` to `end` over progress 0…1.
    public static func linear(progress: Double, from start: Double, to end: Double) -> Double {
        let p = min(max(progress, 0), 1)
        return start + (end - start) * p
    }
}
