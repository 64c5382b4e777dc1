using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public class FusedMultiHeadAttentionTests
{
    private static CpuMultiHeadAttention Module(int d, double attentionDropout, double hiddenDropout)
    {
        var m = new CpuMultiHeadAttention(new RecComConfig
        {
            PhotoCount = 2, CommentCount = 1, Hidden = d, Heads = 2, AttentionDropout = attentionDropout,
            HiddenDropout = hiddenDropout, LayerNormEps = 1e-8,
        });
        using (no_grad())
            foreach (var (name, p) in m.named_parameters())
                p.copy_(name.EndsWith("bias") ? randn(p.shape).mul(0.3) : name.StartsWith("LayerNorm") ? randn(p.shape).mul(0.3).add(1) : randn(p.shape).mul(0.2));
        m.train();
        return m;
    }

    /// <summary>The sublayer written out with libtorch ops and the same two mask draws (attention first, then hidden):
    /// LayerNorm(Dropout(out_linear(Dropout(softmax(QKᵀ/√dh + mask))·V)) + x).</summary>
    private static Tensor Reference(Dictionary<string, Tensor> p, Tensor x, Tensor kv, Tensor mask, double pa, double ph)
    {
        var (b, lq, lk, d) = (x.shape[0], x.shape[1], kv.shape[1], x.shape[2]);
        var dh = d / 2;
        var q = F.linear(x, p["query.weight"], p["query.bias"]).view(b, lq, 2, dh).transpose(1, 2);
        var k = F.linear(kv, p["key.weight"], p["key.bias"]).view(b, lk, 2, dh).transpose(1, 2);
        var v = F.linear(kv, p["value.weight"], p["value.bias"]).view(b, lk, 2, dh).transpose(1, 2);
        var probs = q.matmul(k.transpose(-2, -1)).mul(1.0 / Math.Sqrt(dh)).add(mask).softmax(-1);
        if (pa > 0) probs = probs.mul(Dropout.KeepMask([b, 2, lq, lk], pa));
        var context = probs.matmul(v).transpose(1, 2).reshape(b, lq, d);
        var h = F.linear(context, p["out_linear.weight"], p["out_linear.bias"]);
        if (ph > 0) h = h.mul(Dropout.KeepMask([b, lq, d], ph));
        return F.layer_norm(h.add(x), [d], p["LayerNorm.weight"], p["LayerNorm.bias"], 1e-8);
    }

    /// <summary>Output and the gradients of the inputs and of every parameter, fused against the reference.</summary>
    private static void AssertMatches(MultiHeadAttention m, Tensor x, Tensor? kv, Tensor mask, double pa, double ph)
    {
        var p = m.named_parameters().ToDictionary(t => t.name, t => (Tensor)t.parameter);
        var inputs = (kv is null ? new[] { x } : new[] { x, kv }).Concat(p.Values).ToArray();
        using var upstream = randn(x.shape);
        (Tensor, Tensor[]) Run(Func<Tensor> f)
        {
            manual_seed(5);
            var y = f();
            y.mul(upstream).sum().backward();
            var grads = inputs.Select(t => t.grad!.clone()).ToArray();
            foreach (var t in inputs) t.grad!.zero_();
            return (y, grads);
        }
        var (fused, fusedGrads) = Run(() => m.forward(x, kv ?? x, mask));
        var (reference, referenceGrads) = Run(() => Reference(p, x, kv ?? x, mask, pa, ph));
        Assert.True(fused.allclose(reference, 1e-4, 1e-5), $"y max diff {fused.sub(reference).abs().max().item<float>()}");
        var names = (kv is null ? new[] { "x" } : new[] { "x", "kv" }).Concat(p.Keys).ToArray();
        for (var i = 0; i < inputs.Length; i++)
            Assert.True(fusedGrads[i].allclose(referenceGrads[i], 1e-3, 1e-4), $"d{names[i]} max diff {fusedGrads[i].sub(referenceGrads[i]).abs().max().item<float>()}");
    }

    /// <summary>19 examples = two whole chunks of 8 and a partial one; d = 64 is the model's width (vector paths),
    /// d = 20 the scalar and remainder paths.</summary>
    [Theory]
    [InlineData(64, 13, 0.3, 0.3)]
    [InlineData(20, 9, 0.5, 0.2)]
    [InlineData(64, 13, 0.0, 0.0)]
    public void Self_attention_sublayer_matches_the_written_out_modules(int d, int length, double pa, double ph)
    {
        manual_seed(21);
        using var m = Module(d, pa, ph);
        var ids = randint(0, 5, [19, length]);
        ids[.., 0] = tensor(1L); // every history has a visible first position
        using var mask = Masks.Causal(ids);
        using var x = randn(19, length, d).requires_grad_(true);
        AssertMatches(m, x, null, mask, pa, ph);
    }

    [Theory]
    [InlineData(64, 7, 11)]
    [InlineData(20, 1, 6)] // one query, as comm_rank_att
    public void Cross_attention_sublayer_matches_the_written_out_modules(int d, int lq, int lk)
    {
        manual_seed(22);
        using var m = Module(d, 0.3, 0.3);
        var ids = randint(0, 4, [11, lk]);
        ids[.., 0] = tensor(2L);
        using var mask = Masks.Bidirectional(ids);
        using var x = randn(11, lq, d).requires_grad_(true);
        using var kv = randn(11, lk, d).requires_grad_(true);
        AssertMatches(m, x, kv, mask, 0.3, 0.3);
    }

    [Fact]
    public void Parameter_gradients_do_not_depend_on_the_thread_count()
    {
        manual_seed(23);
        using var m = Module(64, 0.3, 0.3);
        using var mask = Masks.Causal(randint(1, 9, [40, 50]));
        using var x = randn(40, 50, 64).requires_grad_(true);
        var parameters = m.parameters().Append(x).ToArray();
        Gradients.AssertThreadCountIndependent(() => m.forward(x, x, mask).pow(2).sum(), parameters);
    }

    [Fact]
    public void Rejects_inputs_that_do_not_fit()
    {
        manual_seed(24);
        using var m = Module(8, 0.1, 0.1);
        var p = m.named_parameters().ToDictionary(t => t.name, t => t.parameter);
        var parameters = new FusedMultiHeadAttention.Parameters(p["query.weight"], p["query.bias"], cat([p["key.weight"], p["value.weight"]]),
            cat([p["key.bias"], p["value.bias"]]), p["out_linear.weight"], p["out_linear.bias"], p["LayerNorm.weight"], p["LayerNorm.bias"]);
        using var x = randn(3, 4, 8);
        var e = Assert.Throws<ArgumentException>(() => FusedMultiHeadAttention.Apply(x, null, zeros(3, 1, 1, 5), parameters, 2, 0.1, 0.1, 1e-8));
        Assert.Contains("mask", e.Message);
        Assert.Throws<ArgumentException>(() => FusedMultiHeadAttention.Apply(x, randn(3, 4, 6), zeros(3, 1, 1, 4), parameters, 2, 0.1, 0.1, 1e-8));
        Assert.Throws<ArgumentException>(() => FusedMultiHeadAttention.Apply(randn(4, 8), null, zeros(3, 1, 1, 4), parameters, 2, 0.1, 0.1, 1e-8));
        var shortOut = parameters with { OutBias = zeros(4) };
        Assert.Throws<ArgumentException>(() => FusedMultiHeadAttention.Apply(x, null, zeros(3, 1, 1, 4), shortOut, 2, 0.1, 0.1, 1e-8));
    }
}
