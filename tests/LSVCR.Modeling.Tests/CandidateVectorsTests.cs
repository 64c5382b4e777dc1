using LSVCR.Modeling.Cpu;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace LSVCR.Modeling.Tests;

[Trait("Category", "Kernels")]
public class CandidateVectorsTests
{
    /// <summary>normalize(gate·E + T) against the written-out ops: output and the gradients of E, gate and T. 2,500
    /// rows at d = 64 are two whole chunks and a partial one; d = 20 takes the scalar paths; row 0 is all zeros (the
    /// pad row), where F.normalize's clamp holds the norm at eps. Without ids (text-only) or titles (id-only) the
    /// missing term is absent on both sides.</summary>
    [Theory]
    [InlineData(2500, 64, true, true)]
    [InlineData(37, 20, true, true)]
    [InlineData(300, 64, false, true)]
    [InlineData(300, 64, true, false)]
    public void Fused_vectors_match_normalize_of_gate_ids_plus_titles(int rows, int d, bool withIds, bool withTitles)
    {
        manual_seed(8);
        using var ids = randn(rows, d).mul(0.02);
        using var titles = randn(rows, d);
        using (no_grad())
        {
            ids[0].zero_();
            titles[0].zero_();
        }
        ids.requires_grad_(true);
        titles.requires_grad_(true);
        using var gate = tensor(0.8f).requires_grad_(true);
        using var upstream = randn(rows, d);
        var inputs = new List<Tensor>();
        if (withIds) inputs.AddRange([ids, gate]);
        if (withTitles) inputs.Add(titles);

        var fused = CandidateVectors.TryApply(withIds ? ids : null, withIds ? gate : null, withTitles ? titles : null)!;
        fused.mul(upstream).sum().backward();
        var grads = inputs.Select(t => t.grad!.clone()).ToArray();
        foreach (var t in inputs) t.grad!.zero_();

        var sum = withIds && withTitles ? ids.mul(gate).add(titles) : withIds ? ids.mul(gate) : titles;
        var reference = F.normalize(sum, dim: -1);
        reference.mul(upstream).sum().backward();

        Assert.True(fused.allclose(reference, 1e-5, 1e-6), $"v max diff {fused.sub(reference).abs().max().item<float>()}");
        Assert.Equal(0f, fused[0].abs().sum().item<float>());
        for (var i = 0; i < inputs.Count; i++)
        {
            var (g, r) = (grads[i], inputs[i].grad!);
            if (!withTitles && ReferenceEquals(inputs[i], gate))
            {
                // normalize(gate·E) does not depend on gate > 0: its gradient is zero up to rounding, on both sides.
                Assert.True(g.abs().item<float>() < 1e-4f && r.abs().item<float>() < 1e-4f, $"gate gradient {g.item<float>()} / {r.item<float>()}");
                continue;
            }
            // Row 0's gradient is dv/eps (1e12 scale) on both sides: compare relative to each row's size.
            Assert.True(g.allclose(r, 1e-3, 1e-4 * r.abs().max().item<float>()), $"gradient {i} max diff {g.sub(r).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void Gate_gradient_does_not_depend_on_the_thread_count()
    {
        manual_seed(2);
        using var ids = randn(5000, 64).requires_grad_(true);
        using var titles = randn(5000, 64).requires_grad_(true);
        using var gate = tensor(1f).requires_grad_(true);
        using var upstream = randn(5000, 64);
        Gradients.AssertThreadCountIndependent(() => CandidateVectors.TryApply(ids, gate, titles)!.mul(upstream).sum(), [ids, gate, titles]);
    }

    [Fact]
    public void Other_dtypes_are_left_to_the_written_out_ops_and_mismatched_tables_are_named()
    {
        Assert.Null(CandidateVectors.TryApply(null, null, randn(4, 8, dtype: ScalarType.Float64)));
        var error = Assert.Throws<ArgumentException>(() => CandidateVectors.TryApply(randn(4, 8), tensor(1f), randn(5, 8)));
        Assert.Contains("[4, 8]", error.Message);
        Assert.Contains("[5, 8]", error.Message);
    }
}
