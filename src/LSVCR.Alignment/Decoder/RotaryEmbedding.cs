using static TorchSharp.torch;

namespace LSVCR.Alignment.Decoder;

/// <summary>
/// Rotary positions as Hugging Face's Llama/Qwen2 (the "rotate half" layout): frequency i = θ^(−2i/d) for i &lt; d/2,
/// applied to the pairs (x_i, x_{i+d/2}): x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁].
/// </summary>
public static class RotaryEmbedding
{
    /// <summary>cos and sin [T, d] for positions 0…T−1.</summary>
    public static (Tensor Cos, Tensor Sin) Table(int length, int headDim, double theta, Device device, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var inv = pow(theta, arange(0, headDim, 2, dtype: ScalarType.Float64).div(headDim)).reciprocal();
        var angles = outer(arange(length, dtype: ScalarType.Float64), inv);
        var both = cat([angles, angles], -1);
        return (both.cos().to(dtype, device).MoveToOuterDisposeScope(), both.sin().to(dtype, device).MoveToOuterDisposeScope());
    }

    /// <param name="x">[B, heads, T, d]</param>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var half = x.shape[^1] / 2;
        var rotated = cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
        return x.mul(cos).add(rotated.mul(sin)).MoveToOuterDisposeScope();
    }
}
