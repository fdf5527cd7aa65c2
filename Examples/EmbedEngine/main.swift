// A program that embeds only TesseraEngine: a transformer block and a linear head learn to classify
// random token sequences, then the weights go through a safetensors file and back.
// It links the C kernels, the BLAS and OpenMP, and no image library (Tests/CLITests checks with ldd).
//
//   swift run tessera-embed-example
import Foundation
import TesseraEngine

var rng = TesseraRNG(seed: 0)
let block = Block(64, heads: 4, rng: &rng)
let head = Linear(64, 10, rng: &rng)
let optimizer = AdamW(block.trainableParameters() + head.trainableParameters().map { ("head." + $0.name, $0.tensor) },
                      learningRate: 1e-3, betas: (0.9, 0.95), weightDecay: 0.05)
let x = Tensor.randn([32, 16, 64], rng: &rng)
let labels = (0..<32).map { $0 % 10 }
var first: Float = 0, last: Float = 0
for step in 0..<40 {
    optimizer.zeroGrad()
    let loss = crossEntropy(logits: head(block(x).mean(axis: 1)), labels: labels)
    loss.backward()
    optimizer.arena.clipGradients(maxNorm: 1)
    optimizer.learningRate = Float(Schedule.warmupCosine(iteration: Double(step), base: 1e-3, warmup: 10, total: 40))
    optimizer.update()
    if step == 0 { first = loss.item }
    last = loss.item
}
let path = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-embed-\(getpid()).safetensors").path
let state = block.stateDict().map { (name: $0.name, entry: SafeTensors.Entry(floats: $0.tensor.array, shape: $0.tensor.shape)) }
try SafeTensors.write(.init(tensors: state, metadata: ["producer": "tessera-embed-example"]), to: path)
var reloaded = TesseraRNG(seed: 1)
let copy = Block(64, heads: 4, rng: &reloaded)
let file = try SafeTensors.read(path)
try copy.load(stateDict: Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, Tensor($0.entry.floats()!, shape: $0.entry.shape)) }))
try? FileManager.default.removeItem(atPath: path)
let same = withNoGrad { copy(x).array == block(x).array }
print(String(format: "loss %.4f -> %.4f over 40 steps; reloaded block %@", first, last, same ? "identical" : "DIFFERENT"))
exit(last < 0.7 * first && same ? 0 : 1)
