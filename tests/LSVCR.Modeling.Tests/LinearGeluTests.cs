using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

public class LinearGeluTests
{
    /// <summary>The fused node against F.gelu(F.linear(x, W, b)): output and the gradients of x, W and b.
    /// 64 → 256 takes the vector path (the model's FFN), 5 → 7 the scalar one.</summary>
    [Theory]
    [InlineData(64, 256)]
    [InlineData(5, 7)]
    [InlineData(24, 40)]
    public void Fused_linear_gelu_matches_libtorch(int inFeatures, int outFeatures)
    {
        manual_seed(21);
        using var linear = nn.Linear(inFeatures, outFeatures);
        using var x = randn(3, 300, inFeatures).mul(1.5).requires_grad_(true);
        using var upstream = randn(3, 300, outFeatures);

        var fused = LinearGelu.Apply(x, linear, training: true);
        fused.mul(upstream).sum().backward();
        var grads = new[] { x.grad!.clone(), linear.weight!.grad!.clone(), linear.bias!.grad!.clone() };
        foreach (var t in new[] { x, linear.weight!, linear.bias! }) t.grad!.zero_();

        var reference = F.gelu(F.linear(x, linear.weight!, linear.bias!));
        reference.mul(upstream).sum().backward();

        Assert.Equal(reference.shape, fused.shape);
        Assert.True(fused.allclose(reference, 1e-5, 1e-5), $"y max diff {fused.sub(reference).abs().max().item<float>()}");
        var expected = new[] { x.grad!, linear.weight!.grad!, linear.bias!.grad! };
        var names = new[] { "x", "W", "b" };
        for (var i = 0; i < 3; i++)
            Assert.True(grads[i].allclose(expected[i], 1e-4, 1e-4), $"d{names[i]} max diff {grads[i].sub(expected[i]).abs().max().item<float>()}");
    }

    [Fact]
    public void Evaluation_is_libtorch_gelu_of_the_linear_layer()
    {
        manual_seed(3);
        using var linear = nn.Linear(8, 16);
        using var x = randn(10, 8);
        using var y = LinearGelu.Apply(x, linear, training: false);
        Assert.True(y.equal(F.gelu(linear.forward(x))).all().item<bool>());
    }

    [Fact]
    public void Erf_approximation_is_within_its_bound_everywhere()
    {
        using var grid = linspace(-6, 6, 4001, dtype: ScalarType.Float32);
        var xs = grid.data<float>().ToArray();
        using var exact = grid.to(ScalarType.Float64).erf();
        var e = exact.data<double>().ToArray();
        var worst = xs.Select((v, i) => Math.Abs(LinearGelu.ErfForTests(v) - e[i])).Max();
        Assert.InRange(worst, 0, 5e-7); // the formula's 1.5e-7 plus float rounding
        Assert.InRange(Math.Abs(LinearGelu.ErfForTests(0.5f) - 0.5204998778), 0, 5e-7);
    }
}
