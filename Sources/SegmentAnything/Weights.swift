import Checkpoint
import Tensor

/// Float32 weights read from a checked SAM state dict by their segment_anything names.
struct Weights {
    let state: StateDict

    func callAsFunction(_ key: String) throws -> Tensor {
        guard let stored = state[key] else { throw CheckpointError.missingKey(path: state.path, key: key) }
        return stored.tensor()
    }

    /// `nn.Linear` at `prefix`: weight [out, in] and bias.
    func linear(_ prefix: String) throws -> LinearLayer {
        LinearLayer(weight: try self(prefix + ".weight"), bias: try self(prefix + ".bias"))
    }

    /// The same, its weight packed once for layers that run on a few rows per call (the mask decoder's tokens).
    func fewRowsLinear(_ prefix: String) throws -> LinearLayer {
        var layer = try linear(prefix)
        layer.packedFP32 = PackedLinearWeight(layer.weight)
        return layer
    }

    /// A LayerNorm's (or LayerNorm2d's) weight and bias.
    func norm(_ prefix: String) throws -> Norm {
        Norm(weight: try self(prefix + ".weight"), bias: try self(prefix + ".bias"))
    }
}

/// `nn.Linear` with PyTorch's [out, in] weight; with `packed`, the weight rounded to bf16 for `precision=bf16`;
/// with `packedFP32`, the weight packed once for our fp32 kernel (`Weights.fewRowsLinear`).
struct LinearLayer {
    let weight: Tensor
    let bias: Tensor?
    var packed: PackedBF16?
    var packedFP32: PackedLinearWeight?

    /// The layer, then GELU with `gelu`, with `residual` added (both as our kernel stores its sums, where it runs the
    /// product).
    func callAsFunction(_ x: Tensor, gelu: Bool = false, residual: Tensor? = nil) -> Tensor {
        guard let packed else {
            return linear(x, weight: weight, bias: bias, packed: packedFP32, gelu: gelu, residual: residual)
        }
        var y = linear(x, packedWeight: packed, bias: bias)
        if gelu { y.gelu() }
        return residual.map { y.adding($0) } ?? y
    }

    /// The layer on `rows` rows at `x`, into `y`.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        precondition(packed == nil, "bf16 layers run on tensors")
        linear(x, rows: rows, weight: weight, bias: bias, packed: packedFP32, into: y)
    }

    /// This layer with its weight packed for `precision` (bf16), or as it is (fp32).
    func prepared(for precision: Precision) -> LinearLayer {
        var layer = self
        layer.packed = precision == .bf16 ? PackedBF16(linearWeight: weight) : nil
        return layer
    }
}

struct Norm {
    let weight: Tensor
    let bias: Tensor
}
