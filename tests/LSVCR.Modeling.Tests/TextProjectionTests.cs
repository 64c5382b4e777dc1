using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

public class TextProjectionTests
{
    /// <summary>x·Wᵀ + b against libtorch's linear: output and the gradients of W, b and x. 1,000 rows are two whole
    /// chunks of 384 and a partial one; 256 → 64 is llm_adapter's shape (whole 6 × 64 tiles), 20 → 12 takes the
    /// remainder paths; x without a gradient (the frozen text tables) gets none.</summary>
    [Theory]
    [InlineData(1000, 256, 64, true, true)]
    [InlineData(1000, 256, 64, false, false)]
    [InlineData(37, 20, 12, true, false)]
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

        var fused = TextProjection.Apply(x, w, withBias ? b : null);
        fused.mul(upstream).sum().backward();
        var grads = leaves.Select(t => t.grad!.clone()).ToArray();
        foreach (var t in leaves) t.grad!.zero_();
        var reference = F.linear(x, w, withBias ? b : null);
        reference.mul(upstream).sum().backward();

        Assert.Equal(reference.shape, fused.shape);
        Assert.True(fused.allclose(reference, 1e-4, 1e-5), $"y max diff {fused.sub(reference).abs().max().item<float>()}");
        for (var i = 0; i < leaves.Count; i++)
            Assert.True(grads[i].allclose(leaves[i].grad!, 1e-4, 1e-4), $"gradient {i} max diff {grads[i].sub(leaves[i].grad!).abs().max().item<float>()}");
        if (!xNeedsGrad) Assert.Null(x.grad);
    }

    [Fact]
    public void Other_dtypes_use_libtorch_linear()
    {
        using var x = randn(3, 8, dtype: ScalarType.Float64);
        using var w = randn(4, 8, dtype: ScalarType.Float64);
        using var y = TextProjection.Apply(x, w, null);
        Assert.Equal(ScalarType.Float64, y.dtype);
        Assert.True(y.allclose(x.matmul(w.t())));
    }
}
