using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public class FusedFeedForwardTests
{
    /// <summary>The fused sublayer against the written-out libtorch formula with the same keep mask: output and the
    /// gradients of x, W1, b1, W2, b2, γ and β. 64 → 256 is the model's FFN (vector paths, whole tiles); 20 → 36 takes
    /// the scalar and column-remainder paths. 303 rows: one partial chunk whose last block has 15 rows (tile-row
    /// remainders, accumulating ones in the weight gradients); 1100 rows: two whole chunks of 384 and a partial one.</summary>
    [Theory]
    [InlineData(64, 256, 1100, 0.3)]
    [InlineData(64, 256, 303, 0.0)]
    [InlineData(20, 36, 303, 0.3)]
    [InlineData(32, 48, 130, 0.5)]
    public void Fused_feed_forward_matches_linear_gelu_linear_dropout_add_layer_norm(int d, int inner, int rows, double p)
    {
        manual_seed(13);
        using var linear1 = nn.Linear(d, inner);
        using var linear2 = nn.Linear(inner, d);
        using var norm = nn.LayerNorm(d, 1e-8);
        using (no_grad())
        {
            norm.weight!.copy_(randn(d).mul(0.5).add(1));
            norm.bias!.copy_(randn(d).mul(0.1));
            linear1.bias!.copy_(randn(inner));
            linear2.bias!.copy_(randn(d).mul(0.5));
        }
        using var x = randn(rows, d).mul(2).requires_grad_(true);
        using var upstream = randn(rows, d);
        var parameters = new[] { x, linear1.weight!, linear1.bias!, linear2.weight!, linear2.bias!, norm.weight!, norm.bias! };

        manual_seed(5);
        var fused = FusedFeedForward.Apply(x, linear1, linear2, norm, p, 1e-8, training: true);
        fused.mul(upstream).sum().backward();
        var grads = parameters.Select(t => t.grad!.clone()).ToArray();
        foreach (var t in parameters) t.grad!.zero_();

        manual_seed(5);
        var keep = p > 0 ? Dropout.KeepMask([rows, d], p) : ones(rows, d);
        var inside = F.linear(F.gelu(F.linear(x, linear1.weight!, linear1.bias!)), linear2.weight!, linear2.bias!);
        var reference = F.layer_norm(inside.mul(keep).add(x), [d], norm.weight, norm.bias, 1e-8);
        reference.mul(upstream).sum().backward();

        Assert.Equal(reference.shape, fused.shape);
        Assert.True(fused.allclose(reference, 1e-4, 1e-5), $"y max diff {fused.sub(reference).abs().max().item<float>()}");
        var names = new[] { "x", "W1", "b1", "W2", "b2", "gamma", "beta" };
        for (var i = 0; i < parameters.Length; i++)
            Assert.True(grads[i].allclose(parameters[i].grad!, 1e-3, 1e-4), $"d{names[i]} max diff {grads[i].sub(parameters[i].grad!).abs().max().item<float>()}");
        if (p > 0) Assert.True(keep.eq(0).any().item<bool>()); // the mask really drops
    }

    [Fact]
    public void Batched_input_keeps_its_shape_and_evaluation_uses_the_plain_modules()
    {
        manual_seed(3);
        using var linear1 = nn.Linear(8, 16);
        using var linear2 = nn.Linear(16, 8);
        using var norm = nn.LayerNorm(8, 1e-8);
        using var x = randn(3, 5, 8);
        using var y = FusedFeedForward.Apply(x, linear1, linear2, norm, 0.3, 1e-8, training: false);
        var expected = F.layer_norm(linear2.forward(F.gelu(linear1.forward(x))).add(x), [8], norm.weight, norm.bias, 1e-8);
        Assert.True(y.equal(expected).all().item<bool>());
        using var trained = FusedFeedForward.Apply(x, linear1, linear2, norm, 0.0, 1e-8, training: true);
        Assert.Equal(new long[] { 3, 5, 8 }, trained.shape);
        Assert.True(trained.allclose(expected, 1e-4, 1e-5));
        using var wrong = nn.Linear(16, 4);
        Assert.Throws<ArgumentException>(() => FusedFeedForward.Apply(x, linear1, wrong, norm, 0.3, 1e-8, training: true));
        using var wideNorm = nn.LayerNorm(12, 1e-8);
        Assert.Throws<ArgumentException>(() => FusedFeedForward.Apply(x, linear1, linear2, wideNorm, 0.3, 1e-8, training: true));
    }

    [Fact]
    public void Parameter_gradients_do_not_depend_on_the_thread_count()
    {
        manual_seed(4);
        using var linear1 = nn.Linear(64, 256);
        using var linear2 = nn.Linear(256, 64);
        using var norm = nn.LayerNorm(64, 1e-8);
        using var x = randn(2000, 64).requires_grad_(true);
        var parameters = new[] { linear1.weight!, linear1.bias!, linear2.weight!, linear2.bias!, norm.weight!, norm.bias!, x };
        Gradients.AssertThreadCountIndependent(
            () => FusedFeedForward.Apply(x, linear1, linear2, norm, 0.3, 1e-8, training: true).pow(2).sum(), parameters);
    }

    [Fact]
    public void Erf_approximation_is_within_its_bound_everywhere()
    {
        using var grid = linspace(-6, 6, 4001, dtype: ScalarType.Float32);
        var xs = grid.data<float>().ToArray();
        using var exact = grid.to(ScalarType.Float64).erf();
        var e = exact.data<double>().ToArray();
        var worst = xs.Select((v, i) => Math.Abs(Gelu.Erf(v) - e[i])).Max();
        Assert.InRange(worst, 0, 5e-7); // the formula's 1.5e-7 plus float rounding
        Assert.InRange(Math.Abs(Gelu.Erf(0.5f) - 0.5204998778), 0, 5e-7);
    }
}
