using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public class TiledLinearTests
{
    /// <summary>x·Wᵀ + b against libtorch's linear: output and the gradients of W, b and x. 1,000 rows are two whole
    /// chunks of 384 and a partial one; 256 → 64 is llm_adapter's shape (whole 6 × 64 tiles), 20 → 12 takes the
    /// remainder paths; x without a gradient (the frozen text tables) gets none.</summary>
    [Theory]
    [InlineData(1000, 256, 64, true, true)]
    [InlineData(1000, 256, 64, false, false)]
    [InlineData(37, 20, 12, true, true)]
    [InlineData(5, 256, 64, false, true)]
    public void Projection_matches_linear(int rows, int inputs, int outputs, bool withBias, bool xNeedsGrad)
    {
        manual_seed(6);
        using var w = randn(outputs, inputs).mul(0.05).requires_grad_(true);
        using var b = randn(outputs).requires_grad_(true);
        using var x = randn(2, rows, inputs).requires_grad_(xNeedsGrad);
        using var upstream = randn(2, rows, outputs);
        var leaves = new List<Tensor> { w };
        if (withBias) leaves.Add(b);
        if (xNeedsGrad) leaves.Add(x);
        AssertSame(() => TiledLinear.Apply(x, w, withBias ? b : null), () => F.linear(x, w, withBias ? b : null), upstream, leaves);
        if (!xNeedsGrad) Assert.Null(x.grad);
    }

    /// <summary>Two inputs: a·W_aᵀ + b·W_bᵀ + bias against the Linear over the concatenation (pc_merge's and
    /// p_linear's form), weights as column slices of one [N, K_a + K_b] weight like the model passes them.</summary>
    [Theory]
    [InlineData(1000, 64, 256)]
    [InlineData(1000, 64, 64)]
    [InlineData(41, 20, 9)]
    public void Pair_matches_the_linear_over_the_concatenation(int rows, int ka, int kb)
    {
        manual_seed(7);
        using var w = randn(64, ka + kb).mul(0.05).requires_grad_(true);
        using var bias = randn(64).requires_grad_(true);
        using var a = randn(rows, ka).requires_grad_(true);
        using var b = randn(rows, kb).requires_grad_(true);
        using var upstream = randn(rows, 64);
        AssertSame(() => TiledLinear.Apply(a, w.narrow(1, 0, ka), b, w.narrow(1, ka, kb), bias),
            () => F.linear(cat([a, b], -1), w, bias), upstream, [w, bias, a, b]);
    }

    private static void AssertSame(Func<Tensor> tiled, Func<Tensor> reference, Tensor upstream, IReadOnlyList<Tensor> leaves)
    {
        var y = tiled();
        y.mul(upstream).sum().backward();
        var grads = leaves.Select(t => t.grad!.clone()).ToArray();
        foreach (var t in leaves) t.grad!.zero_();
        var r = reference();
        r.mul(upstream).sum().backward();
        Assert.Equal(r.shape, y.shape);
        Assert.True(y.allclose(r, 1e-4, 1e-5), $"y max diff {y.sub(r).abs().max().item<float>()}");
        for (var i = 0; i < leaves.Count; i++)
            Assert.True(grads[i].allclose(leaves[i].grad!, 1e-4, 1e-4), $"gradient {i} max diff {grads[i].sub(leaves[i].grad!).abs().max().item<float>()}");
    }

    [Fact]
    public void Other_dtypes_use_libtorch_linear()
    {
        using var x = randn(3, 8, dtype: ScalarType.Float64);
        using var w = randn(4, 8, dtype: ScalarType.Float64);
        using var y = TiledLinear.Apply(x, w, null);
        Assert.Equal(ScalarType.Float64, y.dtype);
        Assert.True(y.allclose(x.matmul(w.t())));
    }
}
