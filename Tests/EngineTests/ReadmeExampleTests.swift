import TesseraEngine
import XCTest

/// The README's embedding example, verbatim apart from the step count: it must compile and learn.
final class ReadmeExampleTests: XCTestCase {
    func testReadmeExampleTrains() {
        var rng = TesseraRNG(seed: 0)
        let block = Block(64, heads: 4, rng: &rng)
        let head = Linear(64, 10, rng: &rng)
        let opt = AdamW(block.trainableParameters() + head.trainableParameters().map { ("head." + $0.name, $0.tensor) },
                        learningRate: 1e-3, betas: (0.9, 0.95), weightDecay: 0.05)
        let x = Tensor.randn([32, 16, 64], rng: &rng)
        let labels = (0..<32).map { $0 % 10 }
        var losses: [Float] = []
        for step in 0..<40 {
            opt.zeroGrad()
            let logits = head(block(x).mean(axis: 1))
            let loss = crossEntropy(logits: logits, labels: labels)
            loss.backward()
            opt.arena.clipGradients(maxNorm: 1)
            opt.learningRate = Float(Schedule.warmupCosine(iteration: Double(step), base: 1e-3, warmup: 10, total: 40))
            opt.update()
            losses.append(loss.item)
        }
        XCTAssertLessThan(losses.last!, 0.7 * losses.first!, "losses: \(losses)")
    }
}
