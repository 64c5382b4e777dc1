using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public class InputLayerTests
{
    /// <summary>The fused input step against the written-out ops with the same keep mask: output and the gradients of
    /// id, x, the position table, gate, γ and β. 7 × 50 rows at d = 64 is one whole chunk of 256 and a partial one (the
    /// position of a row wraps inside a chunk); d = 20 takes the scalar paths. Without ids (text-only) or without x
    /// (id-only) the missing term is absent on both sides.</summary>
    [Theory]
    [InlineData(7, 50, 64, 0.3, true, true)]
    [InlineData(3, 5, 20, 0.5, true, true)]
    [InlineData(6, 50, 64, 0.0, true, true)]
    [InlineData(4, 9, 64, 0.3, false, true)]
    [InlineData(4, 9, 64, 0.3, true, false)]
    public void Fused_input_matches_gate_id_plus_x_plus_position_layer_norm_dropout(int b, int l, int d, double p, bool withId, bool withX)
    {
        manual_seed(21);
        using var table = randn(l + 3, d).requires_grad_(true); // the position embedding, longer than the history
        using var gate = tensor(0.7f).requires_grad_(true);
        using var gamma = randn(d).mul(0.5).add(1).requires_grad_(true);
        using var beta = randn(d).mul(0.1).requires_grad_(true);
        using var id = randn(b, l, d).requires_grad_(true);
        using var x = randn(b, l, d).mul(2).requires_grad_(true);
        using var upstream = randn(b, l, d);
        var inputs = new List<Tensor> { table, gamma, beta };
        if (withId) inputs.AddRange([id, gate]);
        if (withX) inputs.Add(x);

        manual_seed(5);
        var fused = InputLayer.TryApply(withId ? id : null, withId ? gate : null, withX ? x : null, table.narrow(0, 0, l), gamma, beta, p, 1e-8)!;
        fused.mul(upstream).sum().backward();
        var grads = inputs.Select(t => t.grad!.clone()).ToArray();
        foreach (var t in inputs) t.grad!.zero_();

        manual_seed(5);
        var keep = p > 0 ? Dropout.KeepMask([b, l, d], p) : ones(b, l, d);
        var sum = table.narrow(0, 0, l).unsqueeze(0).expand(b, l, d);
        if (withX) sum = x.add(sum);
        if (withId) sum = id.mul(gate).add(sum);
        var reference = F.layer_norm(sum, [d], gamma, beta, 1e-8).mul(keep);
        reference.mul(upstream).sum().backward();

        Assert.Equal(reference.shape, fused.shape);
        Assert.True(fused.allclose(reference, 1e-4, 1e-5), $"y max diff {fused.sub(reference).abs().max().item<float>()}");
        for (var i = 0; i < inputs.Count; i++)
            Assert.True(grads[i].allclose(inputs[i].grad!, 1e-3, 1e-4), $"gradient {i} max diff {grads[i].sub(inputs[i].grad!).abs().max().item<float>()}");
        Assert.Equal(0f, table.grad!.narrow(0, l, 3).abs().sum().item<float>()); // rows past the history untouched
        if (p > 0) Assert.True(keep.eq(0).any().item<bool>());
    }

    [Fact]
    public void Gradients_do_not_depend_on_the_thread_count()
    {
        manual_seed(4);
        using var table = randn(50, 64).requires_grad_(true);
        using var gate = tensor(1.3f).requires_grad_(true);
        using var gamma = ones(64).requires_grad_(true);
        using var beta = zeros(64).requires_grad_(true);
        using var id = randn(40, 50, 64).requires_grad_(true);
        using var x = randn(40, 50, 64).requires_grad_(true);
        using var upstream = randn(40, 50, 64);
        Gradients.AssertThreadCountIndependent(
            () => InputLayer.TryApply(id, gate, x, table, gamma, beta, 0.3, 1e-8)!.mul(upstream).sum(), [table, gate, gamma, beta, id, x]);
    }

    [Fact]
    public void Other_dtypes_are_left_to_the_written_out_ops_and_bad_shapes_are_named()
    {
        using var table = randn(5, 8);
        using var x = randn(2, 5, 8);
        Assert.Null(InputLayer.TryApply(null, null, x.to(ScalarType.Float64), table.to(ScalarType.Float64), ones(8), zeros(8), 0.3, 1e-8));
        var error = Assert.Throws<ArgumentException>(() => InputLayer.TryApply(null, null, x, randn(4, 8), ones(8), zeros(8), 0.3, 1e-8));
        Assert.Contains("positions [4, 8]", error.Message);
    }
}
