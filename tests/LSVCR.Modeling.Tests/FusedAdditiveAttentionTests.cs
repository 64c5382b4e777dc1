using LSVCR.Modeling.Cpu;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public class FusedAdditiveAttentionTests
{
    private sealed record Head(Linear Linear1, LayerNorm Norm, Linear Linear2) : IDisposable
    {
        public static Head Random(int d)
        {
            var head = new Head(nn.Linear(d, 2 * d), nn.LayerNorm(2 * d, 1e-8), nn.Linear(2 * d, 1));
            using (no_grad())
            {
                head.Linear1.bias!.copy_(randn(2 * d).mul(0.5));
                head.Norm.weight!.copy_(randn(2 * d).mul(0.5).add(1));
                head.Norm.bias!.copy_(randn(2 * d).mul(0.1));
                head.Linear2.weight!.copy_(randn(1, 2 * d));
                head.Linear2.bias!.copy_(randn(1));
            }
            return head;
        }

        public Tensor[] Parameters => [Linear1.weight!, Linear1.bias!, Norm.weight!, Norm.bias!, Linear2.weight!, Linear2.bias!];

        /// <summary>rec_att written out with libtorch ops and the keep mask <see cref="Dropout.Apply"/> would draw.</summary>
        public Tensor Reference(Tensor h, Tensor mask, double p)
        {
            var keep = p > 0 ? Dropout.KeepMask([h.shape[0], h.shape[1], Linear1.weight!.shape[0]], p) : ones(1);
            var hidden = F.linear(h, Linear1.weight!, Linear1.bias!).mul(keep);
            var a = F.linear(F.gelu(F.layer_norm(hidden, [hidden.shape[2]], Norm.weight, Norm.bias, 1e-8)), Linear2.weight!, Linear2.bias!);
            var w = a.squeeze(-1).add(mask).softmax(-1);
            return bmm(w.unsqueeze(1), h).squeeze(1);
        }

        public void Dispose()
        {
            Linear1.Dispose();
            Norm.Dispose();
            Linear2.Dispose();
        }
    }

    /// <summary>Histories of <paramref name="lengths"/> (trailing pads; 0 = all pad, whose weights stay uniform as in
    /// the reference) as the Rec head sees them: mask [B, L] of 0 / −1e6.</summary>
    private static Tensor PadMask(long[] lengths, int l) =>
        arange(l).unsqueeze(0).lt(tensor(lengths).unsqueeze(1)).to(ScalarType.Float32).sub(1).mul(-Masks.Hidden);

    /// <summary>The fused head against the written-out formula with the same dropout draw: output and the gradients
    /// of h, W1, b1, γ, β, W2 and b2. d = 64, L = 50 is the model's head (two whole chunks and a partial one);
    /// d = 20 takes the vector tails (2d = 40); L = 1 has a single position.</summary>
    [Theory]
    [InlineData(64, 50, 0.3)]
    [InlineData(64, 50, 0.0)]
    [InlineData(20, 7, 0.3)]
    [InlineData(8, 1, 0.5)]
    public void Fused_head_matches_linear_dropout_layer_norm_gelu_linear_softmax_pooling(int d, int l, double p)
    {
        manual_seed(17);
        using var head = Head.Random(d);
        long[] lengths = [l, Math.Max(1, l - 3), 0, l, 1, l, Math.Max(1, l / 2), l, 2, l];
        using var h = randn(lengths.Length, l, d).mul(1.5).requires_grad_(true);
        using var mask = PadMask(lengths, l);
        using var upstream = randn(lengths.Length, d);
        var inputs = new[] { h }.Concat(head.Parameters).ToArray();

        manual_seed(5);
        var fused = FusedAdditiveAttention.TryApply(h, mask, head.Linear1, head.Norm, head.Linear2, p, 1e-8);
        Assert.NotNull(fused);
        fused!.mul(upstream).sum().backward();
        var grads = inputs.Select(t => t.grad!.clone()).ToArray();
        foreach (var t in inputs) t.grad!.zero_();

        manual_seed(5);
        var reference = head.Reference(h, mask, p);
        reference.mul(upstream).sum().backward();

        Assert.Equal(reference.shape, fused.shape);
        Assert.True(fused.allclose(reference, 1e-4, 1e-5), $"output max diff {fused.sub(reference).abs().max().item<float>()}");
        var names = new[] { "h", "W1", "b1", "gamma", "beta", "W2", "b2" };
        for (var i = 0; i < inputs.Length; i++)
            Assert.True(grads[i].allclose(inputs[i].grad!, 1e-3, 1e-4), $"d{names[i]} max diff {grads[i].sub(inputs[i].grad!).abs().max().item<float>()}");
        if (p > 0 && l > 1)
        {
            // The draw matters: without dropout the output differs (one position always has weight 1).
            manual_seed(5);
            using var undropped = head.Reference(h, mask, 0);
            Assert.False(fused.allclose(undropped, 1e-4, 1e-5));
        }
    }

    [Fact]
    public void Gradients_do_not_depend_on_the_thread_count()
    {
        manual_seed(8);
        using var head = Head.Random(64);
        using var h = randn(37, 50, 64).requires_grad_(true);
        using var mask = PadMask(Enumerable.Range(0, 37).Select(i => (long)(i % 50 + 1)).ToArray(), 50);
        Gradients.AssertThreadCountIndependent(
            () => FusedAdditiveAttention.TryApply(h, mask, head.Linear1, head.Norm, head.Linear2, 0.3, 1e-8)!.pow(2).sum(),
            [h, .. head.Parameters]);
    }

    [Fact]
    public void Other_dtypes_and_shapes_fall_back_to_the_modules()
    {
        using var head = Head.Random(8);
        using var mask = zeros(2, 3);
        using var h64 = randn(2, 3, 8, dtype: ScalarType.Float64);
        Assert.Null(FusedAdditiveAttention.TryApply(h64, mask, head.Linear1, head.Norm, head.Linear2, 0.3, 1e-8));
        using var wrongMask = zeros(2, 4);
        using var h = randn(2, 3, 8);
        Assert.Null(FusedAdditiveAttention.TryApply(h, wrongMask, head.Linear1, head.Norm, head.Linear2, 0.3, 1e-8));
        Assert.NotNull(FusedAdditiveAttention.TryApply(h, mask, head.Linear1, head.Norm, head.Linear2, 0.3, 1e-8));
    }
}
