using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public class FusedAttentionTests
{
    /// <summary>The written-out reference: softmax(QKᵀ/√dh + mask), dropout with <see cref="Dropout.KeepMask"/>, ·V.</summary>
    private static Tensor Reference(Tensor q, Tensor k, Tensor v, Tensor mask, int heads, double p)
    {
        var (b, lq, lk, d) = (q.shape[0], q.shape[1], k.shape[1], q.shape[2]);
        var dh = d / heads;
        var qh = q.view(b, lq, heads, dh).transpose(1, 2);
        var kh = k.view(b, lk, heads, dh).transpose(1, 2);
        var vh = v.view(b, lk, heads, dh).transpose(1, 2);
        var probs = qh.matmul(kh.transpose(-2, -1)).mul(1.0 / Math.Sqrt(dh)).add(mask).softmax(-1);
        if (p > 0) probs = probs.mul(Dropout.KeepMask([b, heads, lq, lk], p));
        return probs.matmul(vh).transpose(1, 2).reshape(b, lq, d);
    }

    private static Tensor PadMask(long[,] ids) => Masks.Bidirectional(tensor(ids));

    /// <summary>Seeds torch, runs <paramref name="f"/>, backpropagates ⟨f(), upstream⟩ and returns the output with the
    /// inputs' gradients (which are reset for the next run).</summary>
    private static (Tensor Output, Tensor[] Grads) Run(int seed, Func<Tensor> f, Tensor upstream, params Tensor[] inputs)
    {
        manual_seed(seed);
        var output = f();
        output.mul(upstream).sum().backward();
        var grads = inputs.Select(t => t.grad!.clone()).ToArray();
        foreach (var t in inputs) t.grad!.zero_();
        return (output, grads);
    }

    private static void AssertClose(Tensor actual, Tensor expected, string what) =>
        Assert.True(actual.allclose(expected, 1e-4, 1e-5), $"{what} max diff {actual.sub(expected).abs().max().item<float>()}");

    /// <summary>Self-attention over the histories <paramref name="ids"/> (causal mask) against the reference, forward
    /// and gradient, with the same dropout draw. Returns the fused output and the q | k | v input.</summary>
    private static (Tensor Fused, Tensor Qkv) AssertSelfAttentionMatches(Tensor ids, int headDim, double p)
    {
        const int heads = 2;
        var d = heads * headDim;
        var (b, l) = (ids.shape[0], ids.shape[1]);
        using var mask = Masks.Causal(ids);
        manual_seed(11);
        var qkv = randn(b, l, 3 * d).requires_grad_(true);
        using var upstream = randn(b, l, d);
        var (fused, fusedGrad) = Run(99, () => FusedAttention.Self(qkv, mask, heads, p), upstream, qkv);
        var (reference, referenceGrad) = Run(99, () =>
        {
            var parts = qkv.split(d, -1);
            return Reference(parts[0], parts[1], parts[2], mask, heads, p);
        }, upstream, qkv);
        AssertClose(fused, reference, "forward");
        AssertClose(fusedGrad[0], referenceGrad[0], "backward");
        return (fused, qkv);
    }

    [Theory]
    [InlineData(4, 0.0)]
    [InlineData(4, 0.3)]
    [InlineData(16, 0.3)]
    [InlineData(32, 0.3)]
    [InlineData(40, 0.5)]
    public void Self_attention_matches_the_reference_formula_forward_and_backward(int headDim, double p)
    {
        // Example 2 is all pad: its causal rows are fully masked and must stay finite, as in the reference.
        using var ids = tensor(new long[,] { { 1, 2, 3, 4, 5, 6, 7 }, { 3, 4, 0, 0, 0, 0, 0 }, { 0, 0, 0, 0, 0, 0, 0 } });
        var (fused, qkv) = AssertSelfAttentionMatches(ids, headDim, p);
        Assert.False(fused.isnan().any().item<bool>());
        var parts = qkv.split(2 * headDim, -1);
        using var mask = Masks.Causal(ids);
        if (p > 0) Assert.True(fused.ne(Reference(parts[0], parts[1], parts[2], mask, 2, 0)).any().item<bool>(), "dropout changed nothing");
    }

    [Theory]
    [InlineData(8, 0.0)]
    [InlineData(32, 0.3)]
    [InlineData(3, 0.3)]
    public void Cross_attention_matches_the_reference_formula_forward_and_backward(int headDim, double p)
    {
        const int heads = 2;
        var d = heads * headDim;
        using var mask = PadMask(new long[,] { { 1, 2, 3, 0, 0 }, { 0, 0, 0, 0, 0 } }); // keys; example 1 has none
        manual_seed(5);
        using var q = randn(2, 4, d).requires_grad_(true);
        using var kv = randn(2, 5, 2 * d).requires_grad_(true);
        using var upstream = randn(2, 4, d);

        var (fused, fusedGrads) = Run(7, () => FusedAttention.Cross(q, kv, mask, heads, p), upstream, q, kv);
        var (reference, referenceGrads) = Run(7, () =>
        {
            var parts = kv.split(d, -1);
            return Reference(q, parts[0], parts[1], mask, heads, p);
        }, upstream, q, kv);

        AssertClose(fused, reference, "forward");
        AssertClose(fusedGrads[0], referenceGrads[0], "dq");
        AssertClose(fusedGrads[1], referenceGrads[1], "dkv");
    }

    [Theory]
    [InlineData(50, 32)] // the reference shape: score rows of 50 keys cover the wide vector blocks
    [InlineData(37, 8)]
    public void Long_histories_match_the_reference_formula(int length, int headDim)
    {
        using var ids = arange(1, 2 * length + 1).view(2, length).mul(arange(length).lt(length - 5).to(ScalarType.Int64)); // 5 pads each
        AssertSelfAttentionMatches(ids, headDim, 0.3);
    }

    [Fact]
    public void Scores_far_beyond_exp_range_stay_finite_and_match_the_reference()
    {
        // Scores of several hundred overflow exp unless each row's maximum — wherever it sits in the row — is taken
        // out first.
        using var mask = PadMask(new long[,] { { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 } });
        manual_seed(12);
        using var q = randn(1, 3, 16).mul(20);
        using var kv = randn(1, 12, 32).mul(20);
        using var fused = FusedAttention.Cross(q, kv, mask, 2, 0);
        var parts = kv.split(16, -1);
        using var reference = Reference(q, parts[0], parts[1], mask, 2, 0);
        Assert.False(fused.isnan().any().item<bool>() || fused.isinf().any().item<bool>());
        Assert.True(fused.allclose(reference, 1e-4, 1e-3), $"max diff {fused.sub(reference).abs().max().item<float>()}");
    }

    [Fact]
    public void A_single_query_attends_like_the_comm_rank_head()
    {
        using var mask = PadMask(new long[,] { { 4, 5, 0 } });
        manual_seed(2);
        using var q = randn(1, 1, 8);
        using var kv = randn(1, 3, 16);
        using var fused = FusedAttention.Cross(q, kv, mask, 2, 0);
        var parts = kv.split(8, -1);
        using var reference = Reference(q, parts[0], parts[1], mask, 2, 0);
        Assert.True(fused.allclose(reference, 1e-5, 1e-6));
    }

    /// <summary>Skipping the keys after each row's last visible key is exact: outputs and gradients equal those of
    /// computing every key, bit for bit (causal rows, trailing pads, an all-pad example, cross-attention pads).</summary>
    [Theory]
    [InlineData(50, 32, 0.3)] // the training shape: 8-row blocks of every width up to the padded 64 keys
    [InlineData(50, 32, 0.0)]
    [InlineData(37, 40, 0.3)] // head width with a column remainder (the row-at-a-time path) and a 5-row last block
    [InlineData(7, 4, 0.3)]
    public void Skipping_hidden_keys_changes_no_bit(int length, int headDim, double p)
    {
        const int heads = 2;
        var d = heads * headDim;
        manual_seed(21);
        using var lengths = tensor(new long[] { length, length - 3, 1, 0 });
        using var ids = arange(1, length + 1).unsqueeze(0).mul(arange(length).unsqueeze(0).lt(lengths.unsqueeze(1)).to(ScalarType.Int64));
        using var causal = Masks.Causal(ids);
        using var pads = Masks.Bidirectional(ids);
        var qkv = randn(4, length, 3 * d).requires_grad_(true);
        var q = randn(4, 5, d).requires_grad_(true);
        var kv = randn(4, length, 2 * d).requires_grad_(true);
        using var upSelf = randn(4, length, d);
        using var upCross = randn(4, 5, d);
        foreach (var (name, run, up, inputs) in new (string, Func<bool, Tensor>, Tensor, Tensor[])[]
                 {
                     ("self", skip => FusedAttention.Self(qkv, causal, heads, p, skip), upSelf, [qkv]),
                     ("cross", skip => FusedAttention.Cross(q, kv, pads, heads, p, skip), upCross, [q, kv]),
                 })
        {
            var (skipped, skippedGrads) = Run(3, () => run(true), up, inputs);
            var (full, fullGrads) = Run(3, () => run(false), up, inputs);
            Assert.True(skipped.eq(full).all().item<bool>(), $"{name} forward differs by {skipped.sub(full).abs().max().item<float>()}");
            for (var i = 0; i < inputs.Length; i++)
                Assert.True(skippedGrads[i].eq(fullGrads[i]).all().item<bool>(), $"{name} gradient {i} differs by {skippedGrads[i].sub(fullGrads[i]).abs().max().item<float>()}");
        }
    }

    /// <summary>A hidden key whose score is so large that it outweighs the −1e6 of its mask keeps its weight, as in
    /// the reference: the per-head score bound turns skipping off.</summary>
    [Fact]
    public void A_hidden_key_that_outscores_its_mask_is_not_skipped()
    {
        using var mask = PadMask(new long[,] { { 1, 0 } }); // key 1 is hidden and trails the only visible key
        using var q = tensor(new float[] { 2000, 0, 0, 0, 2000, 0, 0, 0 }).view(1, 1, 8);
        // k | v per key: key 0 k = 0, v = 1; key 1 k = (2000, 0, 0, 0) per head (score/√dh = 2e6), v = 5.
        using var kv = tensor(new float[] { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2000, 0, 0, 0, 2000, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5 }).view(1, 2, 16);
        using var fused = FusedAttention.Cross(q, kv, mask, 2, 0);
        var parts = kv.split(8, -1);
        using var reference = Reference(q, parts[0], parts[1], mask, 2, 0);
        Assert.Equal(5f, reference[0, 0, 0].item<float>());
        Assert.True(fused.allclose(reference), $"fused {fused[0, 0, 0].item<float>()} vs reference {reference[0, 0, 0].item<float>()}");
    }

    [Fact]
    public void Rejects_a_mask_that_does_not_fit()
    {
        using var qkv = randn(2, 3, 12);
        using var mask = zeros(2, 1, 2, 3);
        var e = Assert.Throws<ArgumentException>(() => FusedAttention.Self(qkv, mask, 2, 0));
        Assert.Contains("mask", e.Message);
    }
}
