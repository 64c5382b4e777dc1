using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

public class ResidualNormTests
{
    /// <summary>Fused LayerNorm(Dropout(h) + r) against the written-out libtorch formula with the same keep mask:
    /// output and the gradients of h, r, γ and β. d = 64 takes the vector path, d = 20 the scalar remainder.</summary>
    [Theory]
    [InlineData(64, 0.3)]
    [InlineData(20, 0.3)]
    [InlineData(64, 0.0)]
    [InlineData(48, 0.5)]
    public void Fused_residual_norm_matches_dropout_add_layer_norm(int d, double p)
    {
        manual_seed(11);
        using var norm = nn.LayerNorm(d, 1e-8);
        using (no_grad())
        {
            norm.weight!.copy_(randn(d).mul(0.5).add(1));
            norm.bias!.copy_(randn(d).mul(0.1));
        }
        // 300 rows: a whole chunk of 256 rows and a partial one.
        using var h = randn(3, 100, d).mul(2).requires_grad_(true);
        using var r = randn(3, 100, d).requires_grad_(true);
        using var upstream = randn(3, 100, d);

        manual_seed(5);
        var fused = ResidualNorm.Apply(h, r, norm, p, 1e-8, training: true);
        fused.mul(upstream).sum().backward();
        var grads = new[] { h.grad!.clone(), r.grad!.clone(), norm.weight!.grad!.clone(), norm.bias!.grad!.clone() };
        foreach (var t in new[] { h, r, norm.weight!, norm.bias! }) t.grad!.zero_();

        manual_seed(5);
        var keep = p > 0 ? Dropout.KeepMask(h.shape, p) : ones_like(h);
        var reference = F.layer_norm(h.mul(keep).add(r), [d], norm.weight, norm.bias, 1e-8);
        reference.mul(upstream).sum().backward();

        Assert.True(fused.allclose(reference, 1e-4, 1e-5), $"y max diff {fused.sub(reference).abs().max().item<float>()}");
        var expected = new[] { h.grad!, r.grad!, norm.weight!.grad!, norm.bias!.grad! };
        var names = new[] { "h", "r", "gamma", "beta" };
        for (var i = 0; i < 4; i++)
            Assert.True(grads[i].allclose(expected[i], 1e-3, 1e-4), $"d{names[i]} max diff {grads[i].sub(expected[i]).abs().max().item<float>()}");
        if (p > 0) Assert.True(keep.eq(0).any().item<bool>()); // the mask really drops
    }

    [Fact]
    public void Evaluation_is_layer_norm_of_the_plain_sum_and_shapes_must_match()
    {
        manual_seed(2);
        using var norm = nn.LayerNorm(16, 1e-8);
        using var h = randn(4, 16);
        using var r = randn(4, 16);
        using var y = ResidualNorm.Apply(h, r, norm, 0.3, 1e-8, training: false);
        Assert.True(y.allclose(F.layer_norm(h.add(r), [16], norm.weight, norm.bias, 1e-8), 1e-6, 1e-6));
        Assert.Throws<ArgumentException>(() => ResidualNorm.Apply(h, randn(4, 8), norm, 0.3, 1e-8, training: true));
    }

    [Fact]
    public void Gamma_and_beta_gradients_do_not_depend_on_the_thread_count()
    {
        manual_seed(3);
        using var norm = nn.LayerNorm(64, 1e-8);
        using var h = randn(1000, 64).requires_grad_(true);
        using var r = randn(1000, 64);
        Tensor[] Run(int threads)
        {
            var before = get_num_threads();
            set_num_threads(threads);
            try
            {
                manual_seed(9);
                ResidualNorm.Apply(h, r, norm, 0.3, 1e-8, training: true).pow(2).sum().backward();
                var g = new[] { norm.weight!.grad!.clone(), norm.bias!.grad!.clone(), h.grad!.clone() };
                norm.weight!.grad!.zero_(); norm.bias!.grad!.zero_(); h.grad!.zero_();
                return g;
            }
            finally { set_num_threads(before); }
        }
        var one = Run(1);
        var two = Run(2);
        for (var i = 0; i < 3; i++) Assert.True(one[i].equal(two[i]).all().item<bool>());
    }
}
