using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

public class ResidualNormTests
{
    /// <summary>Fused LayerNorm(Dropout(linear(x)) + r) against the written-out libtorch formula with the same keep
    /// mask: output and the gradients of x, W, b, r, γ and β. d = 64 takes the vector path, d = 20 the scalar one.</summary>
    [Theory]
    [InlineData(32, 64, 0.3)]
    [InlineData(7, 20, 0.3)]
    [InlineData(64, 64, 0.0)]
    [InlineData(16, 48, 0.5)]
    public void Fused_residual_norm_matches_dropout_add_layer_norm(int inFeatures, int d, double p)
    {
        manual_seed(11);
        using var linear = nn.Linear(inFeatures, d);
        using var norm = nn.LayerNorm(d, 1e-8);
        using (no_grad())
        {
            norm.weight!.copy_(randn(d).mul(0.5).add(1));
            norm.bias!.copy_(randn(d).mul(0.1));
            linear.bias!.copy_(randn(d));
        }
        // 300 rows: a whole chunk of 256 rows and a partial one.
        using var x = randn(3, 100, inFeatures).mul(2).requires_grad_(true);
        using var r = randn(3, 100, d).requires_grad_(true);
        using var upstream = randn(3, 100, d);
        var parameters = new[] { x, r, linear.weight!, linear.bias!, norm.weight!, norm.bias! };

        manual_seed(5);
        var fused = ResidualNorm.Apply(linear, x, r, norm, p, 1e-8, training: true);
        fused.mul(upstream).sum().backward();
        var grads = parameters.Select(t => t.grad!.clone()).ToArray();
        foreach (var t in parameters) t.grad!.zero_();

        manual_seed(5);
        var keep = p > 0 ? Dropout.KeepMask([3, 100, d], p) : ones(3, 100, d);
        var reference = F.layer_norm(F.linear(x, linear.weight!, linear.bias!).mul(keep).add(r), [d], norm.weight, norm.bias, 1e-8);
        reference.mul(upstream).sum().backward();

        Assert.True(fused.allclose(reference, 1e-4, 1e-5), $"y max diff {fused.sub(reference).abs().max().item<float>()}");
        var names = new[] { "x", "r", "W", "b", "gamma", "beta" };
        for (var i = 0; i < parameters.Length; i++)
            Assert.True(grads[i].allclose(parameters[i].grad!, 1e-3, 1e-4), $"d{names[i]} max diff {grads[i].sub(parameters[i].grad!).abs().max().item<float>()}");
        if (p > 0) Assert.True(keep.eq(0).any().item<bool>()); // the mask really drops
    }

    [Fact]
    public void Evaluation_is_layer_norm_of_the_plain_sum_and_shapes_must_match()
    {
        manual_seed(2);
        using var linear = nn.Linear(8, 16);
        using var norm = nn.LayerNorm(16, 1e-8);
        using var x = randn(4, 8);
        using var r = randn(4, 16);
        using var y = ResidualNorm.Apply(linear, x, r, norm, 0.3, 1e-8, training: false);
        Assert.True(y.allclose(F.layer_norm(linear.forward(x).add(r), [16], norm.weight, norm.bias, 1e-8), 1e-6, 1e-6));
        Assert.Throws<ArgumentException>(() => ResidualNorm.Apply(linear, x, randn(4, 8), norm, 0.3, 1e-8, training: true));
    }

    [Fact]
    public void Parameter_gradients_do_not_depend_on_the_thread_count()
    {
        manual_seed(3);
        using var linear = nn.Linear(16, 64);
        using var norm = nn.LayerNorm(64, 1e-8);
        using var x = randn(1000, 16).requires_grad_(true);
        using var r = randn(1000, 64);
        var parameters = new[] { linear.bias!, norm.weight!, norm.bias!, x };
        Tensor[] Run(int threads)
        {
            var before = get_num_threads();
            set_num_threads(threads);
            try
            {
                manual_seed(9);
                ResidualNorm.Apply(linear, x, r, norm, 0.3, 1e-8, training: true).pow(2).sum().backward();
                var g = parameters.Select(t => t.grad!.clone()).ToArray();
                foreach (var t in parameters) t.grad!.zero_();
                return g;
            }
            finally { set_num_threads(before); }
        }
        var one = Run(1);
        var two = Run(2);
        for (var i = 0; i < parameters.Length; i++) Assert.True(one[i].equal(two[i]).all().item<bool>(), $"parameter {i}");
    }
}
